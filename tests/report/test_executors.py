"""blockzoo.report.executors: compare's runs here (local) or as Ray tasks, with the same reuse and resume rules.

The default suite checks the executor abstraction with the local executor and with a stand-in for the ``ray`` module
(tasks run eagerly, finishing in reverse order); the slow test runs a real local Ray on 2 CPUs and checks that it
gives the leaderboard of the local executor."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from blockzoo.data.synthetic import make_synthetic
from blockzoo.errors import ConfigError
from blockzoo.report import compare
from blockzoo.report.compare import CompareConfig, leaderboard_rows, run_compare
from blockzoo.report.executors import CompareRun, LocalExecutor, RayExecutor, make_executor
from blockzoo.train import TrainConfig, config_hash

TINY = dict(data="synthetic", subset=32, epochs=1, batch_size=32, progress=False, precision="fp32",
            channels_last=False, threads=1)


@pytest.fixture(scope="module")
def data():
    return make_synthetic("train", n=32, image_size=8), make_synthetic("test", n=32, image_size=8)


def grid(out: Path, seeds=(0, 1)) -> list[CompareRun]:
    runs = []
    for seed in seeds:
        cfg = TrainConfig(model="resnet20", slots={"attn": "eca"}, seed=seed, **TINY)
        h = config_hash(cfg)
        runs.append(CompareRun("attn=eca", seed, dataclasses.replace(cfg, out_dir=str(out / f"seed{seed}-{h}")), h))
    return runs


def test_the_local_executor_reuses_finished_runs_and_trains_the_rest_in_order(tmp_path, data):
    trained: list = []
    first = LocalExecutor().run(grid(tmp_path, seeds=[1]), *data, on_run_end=trained.append)
    assert [r["config"]["seed"] for r in trained] == [1]
    trained.clear()
    res = LocalExecutor().run(grid(tmp_path), *data, on_run_end=trained.append)
    assert list(res) == [("attn=eca", 0), ("attn=eca", 1)]
    assert [r["config"]["seed"] for r in trained] == [0]                 # seed 1 was finished: reused
    assert res[("attn=eca", 1)]["final_test_acc"] == first[("attn=eca", 1)]["final_test_acc"]
    assert all(r["config_hash"] == run.config_hash for r, run in zip(res.values(), grid(tmp_path)))


class Ref:
    def __init__(self, value=None, error=None) -> None:
        self.value, self.error = value, error


class FakeRay:
    """What RayExecutor uses of ``ray``: tasks run when submitted; ``wait`` hands back the last one submitted first."""

    class RayTaskError(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__(str(cause))
            self.cause = cause

    exceptions = SimpleNamespace(RayTaskError=RayTaskError)

    def __init__(self) -> None:
        self.initialized, self.init_kwargs, self.options, self.tasks, self.cancelled = False, None, None, [], []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.initialized, self.init_kwargs = True, kwargs

    def shutdown(self) -> None:
        self.initialized = False

    def put(self, obj):
        return obj

    def remote(self, **options):
        self.options = options

        def wrap(fn):
            def submit(*args):
                self.tasks.append(args[0])
                try:
                    return Ref(value=fn(*args))
                except Exception as e:  # noqa: BLE001 - carried to get(), as Ray does
                    return Ref(error=self.RayTaskError(e))
            return SimpleNamespace(remote=submit)
        return wrap

    def wait(self, refs, num_returns):
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def cancel(self, ref, force) -> None:
        self.cancelled.append(ref)


def test_ray_tasks_follow_the_same_reuse_rules_and_keep_the_order(tmp_path, data, monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    LocalExecutor().run(grid(tmp_path, seeds=[0]), *data)                 # seed 0 finished beforehand
    trained: list = []
    runs = grid(tmp_path, seeds=[0, 1, 2])
    res = make_executor("ray", workers=2, threads=1).run(runs, *data, on_run_end=trained.append)
    assert [t.seed for t in ray.tasks] == [1, 2]                          # no task for the finished run
    assert all(t.config.threads == 1 and not t.config.progress for t in ray.tasks)
    assert [r["config"]["seed"] for r in trained] == [2, 1]               # as the tasks finished
    assert list(res) == [r.key for r in runs]                             # the results in the grid's order
    assert ray.init_kwargs["num_cpus"] == 2 and ray.init_kwargs["address"] is None and ray.options["num_cpus"] == 1
    assert not ray.initialized                                            # the Ray started here is shut down
    trained.clear()
    ray.tasks.clear()
    ray.init_kwargs = None
    assert make_executor("ray").run(runs, *data, on_run_end=trained.append).keys() == res.keys()
    assert ray.tasks == [] and trained == [] and ray.init_kwargs is None   # all reused: Ray not even started


def test_a_blockzoo_error_in_a_ray_task_is_raised_as_itself(tmp_path, data, monkeypatch):
    ray = FakeRay()
    ray.initialized = True                                                # a Ray the caller started: left running
    monkeypatch.setitem(sys.modules, "ray", ray)
    bad = [dataclasses.replace(r, config=dataclasses.replace(r.config, momentum=1.5)) for r in grid(tmp_path)]
    with pytest.raises(ConfigError, match="--momentum must be a number in"):
        RayExecutor(address="auto").run(bad, *data)
    assert ray.initialized and ray.init_kwargs is None and len(ray.cancelled) == 1


def test_executor_options_are_checked(monkeypatch):
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ConfigError, match="--executor 'dask' is not one of local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="options of --executor ray"):
        make_executor("local", ray_address="auto")
    with pytest.raises(ConfigError, match="options of --executor ray"):
        make_executor("local", workers=2)
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    with pytest.raises(ConfigError, match="drop --workers"):
        make_executor("ray", ray_address="auto", workers=2)
    monkeypatch.setitem(sys.modules, "ray", None)                         # ray not installed
    with pytest.raises(ConfigError, match=r"pip install 'blockzoo\[ray\]'"):
        make_executor("ray")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="start it without torchrun"):
        make_executor("local")


# ------------------------------------------------------------------------------------------- a real local Ray
@pytest.mark.slow
def test_a_local_ray_on_2_cpus_gives_the_leaderboard_of_the_local_executor(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    row = {"params": 1, "macs": 1_000_000, "latency_ms": None, "latency_iqr_ms": None, "latency_batch": 1,
           "latency_threads": 1, "uncounted_ops": {}}
    monkeypatch.setattr(compare, "_profile_variant", lambda *a, **k: dict(row))   # profiling is not under test

    def run(out: Path, trained: list, **kw) -> dict:
        cfg = CompareConfig(model="resnet20", vary={"attn": ["none", "eca"]}, seeds=[0, 1], out_dir=str(out),
                            train=dict(TINY), **kw)
        return run_compare(cfg, on_run_end=trained.append)

    local, ray_runs, again = [], [], []
    by_local = run(tmp_path / "local", local)
    by_ray = run(tmp_path / "ray", ray_runs, executor="ray", workers=2)
    assert len(local) == len(ray_runs) == 4
    timing = ("train s/run", "train img/s")   # measured, so not the same twice
    assert [{k: v for k, v in r.items() if k not in timing} for r in leaderboard_rows(by_ray)] == [
        {k: v for k, v in r.items() if k not in timing} for r in leaderboard_rows(by_local)]
    for a, b in zip(by_local["variants"], by_ray["variants"], strict=True):
        assert a["test_acc"] == b["test_acc"] and [r["config_hash"] for r in a["runs"]] == [
            r["config_hash"] for r in b["runs"]]
    assert run(tmp_path / "local", again, executor="ray", workers=2)["variants"] == by_local["variants"] and again == []
    stored = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert stored["config"]["executor"] == "ray" and stored["config"]["workers"] == 2


def test_the_compare_command_checks_its_executor_flags_before_training(tmp_path, capsys):
    from blockzoo.cli import main

    argv = ["compare", "resnet20", "--vary", "attn=none,eca", "--data", "synthetic", "--out", str(tmp_path / "c")]
    assert main([*argv, "--workers", "2"]) == 2
    assert "--ray-address and --workers are options of --executor ray" in capsys.readouterr().err
    assert main([*argv, "--executor", "ray", "--ray-address", "auto", "--workers", "3"]) == 2
    assert "drop --workers" in capsys.readouterr().err
    assert not (tmp_path / "c" / "runs").exists()
