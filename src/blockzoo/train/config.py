"""Training configuration: one flat dataclass whose fields map 1:1 to ``blockzoo train`` CLI flags.

Field ``foo_bar`` is flag ``--foo-bar``; booleans are on/off switches; ``None`` means "pick the documented default
for the chosen optimizer / device". :meth:`TrainConfig.resolved` returns a copy with every ``None`` filled in, which
is what the trainer records in ``result.json`` and in checkpoints.

Defaults are tuned for ResNet-20 on Fashion-MNIST on a small CPU: one-cycle SGD with Nesterov momentum, label
smoothing 0.1, bf16 autocast and channels-last (the fast path on CPUs with bf16 support).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "DEFAULT_TTA_THRESHOLDS"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("bf16", "fp32", "amp", "fp16")
DEFAULT_TTA_THRESHOLDS = (0.90, 0.92, 0.93, 0.94)

#: SGD peak learning rate per 128 images (scaled linearly with the batch size); AdamW peak lr (not scaled).
SGD_LR_PER_128 = 0.1
ADAMW_LR = 2e-3
SGD_WEIGHT_DECAY = 5e-4
ADAMW_WEIGHT_DECAY = 0.05


@dataclass
class TrainConfig:
    """Everything that defines a training run (see module docstring for the flag mapping).

    Model
        ``model``: registered model name; ``slots``: slot overrides (``{"attn": "eca"}``, flag ``--set``);
        ``model_kwargs``: other constructor options (``{"attn_stages": (2,)}``, flag ``--model-arg``).
    Optimisation
        ``optimizer``: ``sgd`` (momentum ``momentum``, Nesterov if ``nesterov``) or ``adamw`` (betas 0.9/0.999).
        ``lr``: peak learning rate. ``None`` -> SGD: ``0.1 * batch_size / 128`` (linear scaling rule);
        AdamW: ``2e-3``. ``weight_decay``: ``None`` -> SGD ``5e-4``, AdamW ``0.05`` (decoupled). Weight decay is
        *not* applied to biases and other 1-D parameters (norm scales/shifts) unless ``wd_norm_bias`` is set.
        ``clip_grad_norm``: clip the global gradient L2 norm to this value (``None``: no clipping).
    Schedule (per optimizer step, computed from the global step, so a resumed run follows the same curve)
        ``schedule``: ``onecycle`` (linear warm-up to the peak, then linear decay to 0), ``cosine`` (linear
        warm-up, then cosine decay to 0) or ``constant`` (linear warm-up, then flat). ``warmup_epochs`` may be
        fractional; it is capped at half of the run so that short runs still anneal.
    Loss / data
        ``label_smoothing`` (train loss only; the reported test loss is plain cross-entropy), ``augment``
        (random crop + flip as implemented by :class:`blockzoo.data.Loader`), ``subset`` (use only this many
        training images), ``eval_batch_size`` (``None`` -> ``2 * batch_size``).
    Speed / numerics
        ``precision``: ``bf16`` (bf16 autocast; default), ``fp32``, ``fp16`` (fp16 autocast + GradScaler) or
        ``amp`` (the device's usual mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU).
        ``channels_last``: NHWC memory format for model and batches. ``threads``: ``torch.set_num_threads`` for
        the run (restored afterwards; ``None`` leaves it alone). ``device``: ``auto`` (CUDA if available, else
        CPU) or any torch device string.
    Reproducibility
        ``seed`` seeds torch/numpy/random and the data order. ``deterministic`` turns on
        ``torch.use_deterministic_algorithms`` and cuDNN determinism for the run (restored afterwards); on CPU a
        resumed deterministic run is bit-identical to an uninterrupted one with the same thread count (results
        depend on the number of threads). On GPU it is best effort: ops without a deterministic kernel warn.
        A model passed to :func:`~blockzoo.train.train` ready-made is initialised by the caller, not by ``seed``.
    Outputs
        ``out_dir``: run directory (``None`` -> ``runs/<model>-<data>-seed<seed>``) holding ``metrics.jsonl``,
        ``result.json``, ``last.safetensors`` and ``best.safetensors``. ``checkpoint``: write checkpoints every
        epoch. ``resume``: continue from ``<out_dir>/last.safetensors`` if it exists (else start fresh).
        ``overwrite``: replace a run already in ``out_dir`` (without it, a folder holding a run with other settings
        is refused; one with the same settings is continued).
        ``eval_every``: evaluate on the test set every N epochs (and always after the last one). ``progress``:
        show a rich progress bar. ``max_train_time_s``: stop once this much training time (eval excluded) has
        been spent, evaluate, and finish. ``tta_thresholds``: test accuracies for the time-to-accuracy report.
    """

    model: str = "resnet20"
    slots: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = None
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None
    wd_norm_bias: bool = False
    clip_grad_norm: float | None = None
    schedule: str = "onecycle"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    precision: str = "bf16"
    channels_last: bool = True
    augment: bool = True
    seed: int = 0
    deterministic: bool = False
    threads: int | None = None
    device: str = "auto"
    out_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    checkpoint: bool = True
    eval_every: int = 1
    progress: bool = True
    max_train_time_s: float | None = None
    tta_thresholds: list[float] = field(default_factory=lambda: list(DEFAULT_TTA_THRESHOLDS))

    # ------------------------------------------------------------------------------------------------------ helpers
    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` (naming the flag and the accepted values) for an invalid setting; returns self."""
        def bad(flag: str, value: Any, want: str) -> ValueError:
            return ValueError(f"invalid --{flag.replace('_', '-')} {value!r}: expected {want}")

        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, " or ".join(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, " | ".join(SCHEDULES))
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, " | ".join(PRECISIONS))
        if int(self.epochs) < 1:
            raise bad("epochs", self.epochs, "an integer >= 1")
        if int(self.batch_size) < 1:
            raise bad("batch_size", self.batch_size, "an integer >= 1")
        if self.eval_batch_size is not None and int(self.eval_batch_size) < 1:
            raise bad("eval_batch_size", self.eval_batch_size, "an integer >= 1")
        if self.lr is not None and not self.lr > 0:
            raise bad("lr", self.lr, "a positive number")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise bad("weight_decay", self.weight_decay, "a number >= 0")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", self.momentum, "a number in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", self.label_smoothing, "a number in [0, 1)")
        if not self.warmup_epochs >= 0:
            raise bad("warmup_epochs", self.warmup_epochs, "a number >= 0")
        if int(self.eval_every) < 1:
            raise bad("eval_every", self.eval_every, "an integer >= 1")
        if self.threads is not None and int(self.threads) < 1:
            raise bad("threads", self.threads, "an integer >= 1")
        if self.subset is not None and int(self.subset) < 1:
            raise bad("subset", self.subset, "an integer >= 1")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise bad("clip_grad_norm", self.clip_grad_norm, "a positive number")
        if self.max_train_time_s is not None and not self.max_train_time_s > 0:
            raise bad("max_train_time_s", self.max_train_time_s, "a positive number of seconds")
        if not isinstance(self.slots, dict):
            raise bad("slots", self.slots, "a dict of slot=block overrides")
        if not isinstance(self.model_kwargs, dict):
            raise bad("model_kwargs", self.model_kwargs, "a dict of model constructor options")
        for t in self.tta_thresholds:
            if not 0 < float(t) <= 1:
                raise bad("tta_thresholds", self.tta_thresholds, "accuracies in (0, 1]")
        return self

    def resolved(self) -> "TrainConfig":
        """A validated copy with the optimizer-dependent ``None`` defaults (lr, weight decay, eval batch, out dir)
        filled in. Device and precision stay symbolic; the trainer records the effective ones separately."""
        self.validate()
        cfg = dataclasses.replace(self, slots=dict(self.slots), model_kwargs=dict(self.model_kwargs),
                                  tta_thresholds=[float(t) for t in self.tta_thresholds])
        if cfg.lr is None:
            cfg.lr = SGD_LR_PER_128 * cfg.batch_size / 128 if cfg.optimizer == "sgd" else ADAMW_LR
        if cfg.weight_decay is None:
            cfg.weight_decay = SGD_WEIGHT_DECAY if cfg.optimizer == "sgd" else ADAMW_WEIGHT_DECAY
        if cfg.eval_batch_size is None:
            cfg.eval_batch_size = 2 * cfg.batch_size
        if cfg.out_dir is None:
            cfg.out_dir = f"runs/{cfg.model}-{cfg.data}-seed{cfg.seed}"
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)
