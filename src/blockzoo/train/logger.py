"""Metrics logging of a training run (``--log csv,tensorboard``): per-step and per-epoch scalars.

* ``csv`` (cheap, the default): ``steps.csv`` in the run folder, one row per optimizer step (:data:`STEP_KEYS`:
  global step, epoch, training loss, learning rate, images per second of the step), and ``epochs.csv``, one row per
  epoch (the trainer's ``metrics.jsonl`` keys: train/test loss and accuracy, lr, epoch time ...).
* ``tensorboard``: event files under ``<run folder>/tensorboard`` through ``torch.utils.tensorboard`` (optional extra
  ``pip install 'blockzoo[log]'``): ``step/loss``, ``step/lr``, ``step/img_per_s`` per step and ``epoch/<key>`` per
  epoch, all against the global step.

A resumed run appends without duplicating: :meth:`RunLogger.open` keeps only the rows up to the checkpoint it resumes
from (rows a killed run wrote after its last checkpoint are dropped) and TensorBoard purges the events after that step.

Logging costs no host sync per step: a step's loss is passed as a device tensor and read in one transfer every
``flush_every`` steps and at the end of each epoch. The step time is the host's time between two steps, so on a GPU
single steps are smoothed by the launch queue (their mean over an epoch is exact).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from blockzoo.errors import ConfigError
from blockzoo.files import atomic_write_text

__all__ = ["LOG_BACKENDS", "STEP_KEYS", "STEPS_FILE", "EPOCHS_FILE", "TENSORBOARD_DIR", "parse_log", "RunLogger"]

LOG_BACKENDS = ("csv", "tensorboard")
#: columns of ``steps.csv``; ``step`` is the global step (1-based: the number of optimizer steps done).
STEP_KEYS = ("step", "epoch", "loss", "lr", "img_per_s")
STEPS_FILE, EPOCHS_FILE, TENSORBOARD_DIR = "steps.csv", "epochs.csv", "tensorboard"


def parse_log(value: str) -> tuple[str, ...]:
    """``"csv,tensorboard"`` -> ``("csv", "tensorboard")``; ``"none"`` or ``""`` -> ``()``. Raises
    :class:`ConfigError` naming an unknown backend."""
    names = [n.strip().lower() for n in str(value).split(",") if n.strip()]
    if names == ["none"]:
        return ()
    for n in names:
        if n not in LOG_BACKENDS:
            raise ConfigError(f"--log {value!r}: unknown logger {n!r}; use a comma-separated list of "
                              f"{', '.join(LOG_BACKENDS)} (e.g. --log csv,tensorboard) or none")
    return tuple(dict.fromkeys(names))


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--log tensorboard needs the tensorboard package; install it with "
                          "pip install 'blockzoo[log]' or drop tensorboard from --log") from None
    return SummaryWriter


class RunLogger:
    """The loggers of one run in ``run_dir`` (``backends`` from :func:`parse_log`). Construct it before training
    starts (a missing TensorBoard fails here, before any work), then :meth:`open` once the run folder exists,
    :meth:`log_step` after every optimizer step, :meth:`log_epoch` after every epoch and :meth:`close` at the end."""

    def __init__(self, run_dir: str | Path, backends: tuple[str, ...], *, flush_every: int = 50) -> None:
        self.dir = Path(run_dir)
        self.csv = "csv" in backends
        self._writer_cls = _summary_writer() if "tensorboard" in backends else None
        self._tb: Any = None
        self.flush_every = flush_every
        self._pending: list[tuple[int, int, torch.Tensor | float, float, float | None]] = []

    @property
    def enabled(self) -> bool:
        return self.csv or self._writer_cls is not None

    def open(self, *, epoch: int, step: int) -> None:
        """Start logging after ``epoch`` / global ``step`` (0, 0 for a new run): drop what a previous run in the
        folder logged after them."""
        if self.csv:
            _truncate_csv(self.dir / STEPS_FILE, "step", step)
            _truncate_csv(self.dir / EPOCHS_FILE, "epoch", epoch)
        if self._writer_cls is not None:
            self._tb = self._writer_cls(log_dir=str(self.dir / TENSORBOARD_DIR), purge_step=step + 1)

    def log_step(self, step: int, epoch: int, loss: torch.Tensor | float, lr: float, images: int,
                 seconds: float) -> None:
        """One optimizer step: ``loss`` may be a 0-dim device tensor (read at the next flush, so it must not be
        overwritten before the epoch ends), ``seconds`` the step's time for the throughput."""
        if not self.enabled:
            return
        self._pending.append((step, epoch, loss, float(lr), images / seconds if seconds > 0 else None))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        """One epoch's metrics (a ``metrics.jsonl`` line: keys ``epoch``, ``step``, ``train_loss`` ...)."""
        self.flush()
        if self.csv:
            _append_rows(self.dir / EPOCHS_FILE, list(metrics), [list(metrics.values())])
        if self._tb is not None:
            for k, v in metrics.items():
                if k not in ("epoch", "step") and v is not None:
                    self._tb.add_scalar(f"epoch/{k}", float(v), int(metrics["step"]))
            self._tb.add_scalar("epoch/epoch", int(metrics["epoch"]), int(metrics["step"]))
            self._tb.flush()

    def flush(self) -> None:
        """Write the pending step rows (one device-to-host transfer for their losses)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        losses = [p[2] for p in pending]
        on_device = [i for i, v in enumerate(losses) if isinstance(v, torch.Tensor)]
        if on_device:   # one stack and one transfer for all of them
            read = torch.stack([losses[i].detach().reshape(()).float() for i in on_device]).tolist()
            for i, v in zip(on_device, read):
                losses[i] = v
        rows = [[s, e, loss, lr, ips] for (s, e, _, lr, ips), loss in zip(pending, losses)]
        if self.csv:
            _append_rows(self.dir / STEPS_FILE, list(STEP_KEYS), rows)
        if self._tb is not None:
            for s, _, loss, lr, ips in rows:
                self._tb.add_scalar("step/loss", loss, s)
                self._tb.add_scalar("step/lr", lr, s)
                if ips is not None:
                    self._tb.add_scalar("step/img_per_s", ips, s)

    def close(self) -> None:
        """Flush and close (idempotent)."""
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _append_rows(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])


def _truncate_csv(path: Path, key: str, keep_upto: int) -> None:
    """Keep the header and the rows whose ``key`` column is <= ``keep_upto`` (a torn last row of a killed run is
    dropped); 0 -> the file is removed."""

    if not path.exists():
        return
    if keep_upto <= 0:
        path.unlink()
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or key not in rows[0]:
        path.unlink()
        return
    header, col = rows[0], rows[0].index(key)
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *(r for r in rows[1:] if len(r) == len(header) and _upto(r[col], keep_upto))])
    atomic_write_text(path, buf.getvalue())


def _upto(cell: str, limit: int) -> bool:
    try:
        return float(cell) <= limit
    except ValueError:
        return False
