"""Where ``blockzoo compare`` trains its variant x seed grid: here, one run after another (``--executor local``, the
default), or as Ray tasks (``--executor ray``) on a local Ray (``num_cpus = --workers x --threads``) or an existing
cluster (``--ray-address ADDR``, as ``ray.init(address=...)`` takes it: ``auto``, ``ray://HOST:10001`` ...).

Both executors call the one per-run function :func:`run_one`, so they share compare's rules: a run lives in
``runs/<variant>/seed<k>-<config hash>``; a finished run of the same result-changing configuration is reused, an
unfinished one resumed from its last checkpoint (by :func:`blockzoo.train.train`), anything else trained afresh. The
results, and so the leaderboard, do not depend on the executor. Ray specifics:

* Every task trains with ``--threads`` torch threads (default 1) and asks Ray for as many CPUs; the datasets are put
  into Ray's object store once and shared by the tasks.
* On a cluster the run folders must be on a file system that every node and the driver see (the tasks write them,
  the driver reads finished runs from them); blockzoo and torch must be installed on every node.
* Ray is the optional extra ``ray`` (``pip install 'blockzoo[ray]'``); a Ray started here is shut down at the end,
  one the caller started (``ray.init`` before) is used and left running.
* Ctrl-C or a failed run cancels the tasks not finished yet; their folders keep their last checkpoints, so running
  the same compare again resumes them.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from blockzoo.errors import BlockzooError, ConfigError

__all__ = ["EXECUTORS", "CompareRun", "finished_run", "run_one", "LocalExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "ray")

OnRunEnd = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CompareRun:
    """One run of the grid: its variant ``label``, ``seed``, training ``config`` (``out_dir`` = its run folder) and
    the :func:`blockzoo.train.config_hash` of that config."""

    label: str
    seed: int
    config: Any  # blockzoo.train.TrainConfig
    config_hash: str
    data_fingerprint: str | None = None  # blockzoo.data.data_fingerprint of config.data

    @property
    def key(self) -> tuple[str, int]:
        return self.label, self.seed


def finished_run(run_dir: Path, h: str, data_fp: str | None = None) -> dict[str, Any] | None:
    """The result of the finished run in ``run_dir`` if it was trained with the configuration of hash ``h`` (and, for
    an image folder, on its contents as they are now: ``data_fp``; else :func:`~blockzoo.train.train` refuses the
    folder, naming the fix)."""
    from blockzoo.train import config_hash

    try:
        res = json.loads((Path(run_dir) / "result.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # not finished (or torn): train() resumes it from its checkpoint
    if not isinstance(res, dict) or not isinstance(res.get("config"), dict) or config_hash(res["config"]) != h:
        return None
    if data_fp is not None and res.get("data_fingerprint") not in (None, data_fp):
        return None
    return {**res, "config_hash": h}


def run_one(run: CompareRun, train_set: Any, test_set: Any, console: Any = None) -> tuple[dict[str, Any], bool]:
    """``(result, trained)`` of one run: its finished run's (``trained`` False) or :func:`~blockzoo.train.train`'s,
    which starts the run or resumes it (the folder holds nothing or this very configuration)."""
    from blockzoo.train import train

    res = finished_run(Path(run.config.out_dir), run.config_hash, run.data_fingerprint)
    if res is not None:
        return res, False
    if console is not None:
        console.print(f"[bold]compare[/] {escape(run.config.model)} {escape(run.label)} seed {run.seed}")
    return train(run.config, train_set=train_set, test_set=test_set, console=console), True


class LocalExecutor:
    """The runs one after another in this process, in the order given (compare gives them seed-major, so an
    interrupted compare still has every variant at the first seeds)."""

    name = "local"

    def run(self, runs: Sequence[CompareRun], train_set: Any, test_set: Any, *, console: Any = None,
            on_run_end: OnRunEnd | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """Every run's result, keyed by ``(label, seed)``; ``on_run_end(result)`` after each run trained here."""
        results = {}
        for r in runs:
            res, trained = run_one(r, train_set, test_set, console)
            if trained and on_run_end is not None:
                on_run_end(res)
            results[r.key] = res
        return results


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs the ray package; install it with pip install 'blockzoo[ray]' or use "
                          "--executor local") from None
    return ray


def _ray_task(run: CompareRun, train_set: Any, test_set: Any) -> dict[str, Any]:
    """Body of one Ray task (module level, so that Ray's workers import it by name)."""
    return run_one(run, train_set, test_set)[0]


class RayExecutor:
    """The runs as Ray tasks of ``threads`` CPUs each, at most ``workers`` at once on a local Ray (an existing
    cluster at ``address`` schedules them on its own CPUs)."""

    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int = 1, threads: int | None = None) -> None:
        self.address, self.workers, self.threads = address, int(workers), int(threads or 1)

    def run(self, runs: Sequence[CompareRun], train_set: Any, test_set: Any, *, console: Any = None,
            on_run_end: OnRunEnd | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """As :meth:`LocalExecutor.run`; ``on_run_end`` is called in this process as each task finishes."""
        ray = _import_ray()
        results: dict[tuple[str, int], dict[str, Any]] = {}
        todo = []
        for r in runs:  # finished runs are reused without a task
            res = finished_run(Path(r.config.out_dir), r.config_hash, r.data_fingerprint)
            if res is None:
                todo.append(r)
            else:
                results[r.key] = res
        if not todo:
            return results
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, num_cpus=None if self.address else self.workers * self.threads,
                     include_dashboard=False, configure_logging=False, log_to_driver=False)
        pending: dict[Any, CompareRun] = {}
        try:
            task = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_task)
            data = ray.put(train_set), ray.put(test_set)
            for r in todo:
                # threads and progress do not change the result (nor the run's hash)
                cfg = dataclasses.replace(r.config, threads=self.threads, progress=False)
                pending[task.remote(dataclasses.replace(r, config=cfg), *data)] = r
                if console is not None:
                    console.print(f"[bold]compare[/] {escape(r.config.model)} {escape(r.label)} seed {r.seed} "
                                  f"(ray task)")
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                r = pending.pop(done[0])
                res = _ray_result(ray, done[0])
                results[r.key] = res
                if on_run_end is not None:
                    on_run_end(res)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()
        return {r.key: results[r.key] for r in runs}  # in the order given


def _ray_result(ray: Any, ref: Any) -> dict[str, Any]:
    """The task's result; a blockzoo error raised in the task is raised here as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, BlockzooError):
            raise e.cause from None
        raise


def make_executor(name: str, *, ray_address: str | None = None, workers: int = 1,
                  threads: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor ``--executor name`` asks for, its options checked (:class:`ConfigError` naming the flag)."""
    import torch

    from blockzoo.train.distributed import from_environment

    if from_environment(torch.device("cpu")).enabled:
        raise ConfigError("compare runs its grid from one process; start it without torchrun (use --executor ray to "
                          "train several runs at once)")
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not one of {', '.join(EXECUTORS)}; use --executor local or ray")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
    if name == "local":
        if ray_address is not None or workers != 1:
            raise ConfigError("--ray-address and --workers are options of --executor ray; the local executor trains "
                              "one run at a time: add --executor ray or drop them")
        return LocalExecutor()
    if ray_address is not None and workers != 1:
        raise ConfigError("--workers sizes a local Ray; with --ray-address the cluster's CPUs decide how many runs "
                          "train at once: drop --workers")
    _import_ray()
    return RayExecutor(address=ray_address, workers=workers, threads=threads)
