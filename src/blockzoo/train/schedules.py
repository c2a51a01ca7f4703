"""Per-step learning-rate schedules, computed as a pure function of the global optimizer step.

Because the learning rate depends only on ``(step, total_steps, warmup_steps, peak)``, a resumed run needs nothing
but the step counter to continue on the identical curve (no scheduler object state to save).

Shapes (``s`` = 0-based step, ``W`` = warm-up steps, ``T`` = total steps):

* warm-up (all schedules): ``lr = peak * (s + 1) / W`` for ``s < W`` (rises linearly, reaching ``peak`` at the end
  of warm-up, never exactly 0 so the first step is not wasted);
* ``onecycle``: then linear decay ``peak * (T - s) / (T - W)``, i.e. the triangular one-cycle policy of
  Smith & Topin, "Super-Convergence" (arXiv:1708.07120) as used by fast CIFAR training recipes (the learning rate
  alone; momentum is not cycled). The last step ends at ``peak / (T - W)``;
* ``cosine``: then ``peak * 0.5 * (1 + cos(pi * (s - W) / (T - W)))`` (Loshchilov & Hutter, SGDR,
  arXiv:1608.03983, single cycle, no restarts), ending near 0;
* ``constant``: then ``peak``;
* ``airbench``: its own warm-up, ``peak * (0.2 + 0.8 * s / W)`` for ``s < W`` (from 0.2 x peak), then
  ``peak * (T - s) / (T - W)`` (airbench94's triangular schedule, as :func:`blockzoo.train.speedrun.airbench_schedule`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["lr_at", "LRSchedule", "warmup_steps_for"]

_SCHEDULES = ("onecycle", "cosine", "constant", "airbench")
AIRBENCH_START = 0.2


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in steps: ``round(warmup_epochs * steps_per_epoch)``, capped at half of the run."""
    w = int(round(float(warmup_epochs) * steps_per_epoch))
    return max(0, min(w, total_steps // 2))


def lr_at(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int = 0, schedule: str = "onecycle") -> float:
    """Learning rate for 0-based optimizer step ``step`` (see module docstring for the formulas).

    Steps at or beyond ``total_steps`` get the value of the last step (``total_steps - 1``).
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(_SCHEDULES)}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    s = min(max(int(step), 0), total_steps - 1)
    if s < warmup_steps:
        if schedule == "airbench":
            return peak_lr * (AIRBENCH_START + (1 - AIRBENCH_START) * s / warmup_steps)
        return peak_lr * (s + 1) / warmup_steps
    if schedule == "constant":
        return peak_lr
    span = total_steps - warmup_steps  # >= 1 here because s >= warmup_steps and s < total_steps
    if schedule in ("onecycle", "airbench"):
        return peak_lr * (total_steps - s) / span
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * (s - warmup_steps) / span))


@dataclass(frozen=True)
class LRSchedule:
    """Callable ``step -> lr`` bundling the schedule parameters (see :func:`lr_at`)."""

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    schedule: str = "onecycle"

    def __post_init__(self) -> None:
        lr_at(0, peak_lr=self.peak_lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
              schedule=self.schedule)  # validates arguments

    def __call__(self, step: int) -> float:
        return lr_at(step, peak_lr=self.peak_lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                     schedule=self.schedule)

    def curve(self) -> list[float]:
        """The learning rate of every step of the run."""
        return [self(s) for s in range(self.total_steps)]
