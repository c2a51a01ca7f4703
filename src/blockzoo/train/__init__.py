"""Training for blockzoo models: the trainer behind ``blockzoo train``, LR schedules and safe checkpoints.

>>> from blockzoo.train import TrainConfig, train
>>> result = train(TrainConfig(model="resnet20", data="fashion-mnist", epochs=10))   # doctest: +SKIP

* :class:`TrainConfig` — every field is one CLI flag (``lr`` -> ``--lr``); see its docstring for defaults.
* :func:`train` — SGD (Nesterov) / AdamW, one-cycle / cosine / constant per-step schedules with warm-up, label
  smoothing, bf16/fp16 autocast, channels-last, deterministic mode, exact resume, ``metrics.jsonl`` +
  ``result.json`` + safetensors checkpoints in the run directory.
* :func:`evaluate` — test loss / accuracy of a model over a loader.
* :func:`save_checkpoint` / :func:`load_checkpoint` / :func:`save_weights` / :func:`load_weights` — atomic,
  pickle-free safetensors I/O; corrupt or edited files raise :class:`CheckpointError`. :func:`load_model` rebuilds a
  trained model from its weights file or checkpoint alone (also ``blockzoo.load_model``).
* :func:`result_config` / :func:`config_hash` / :func:`config_diff` — the settings that change a run's result: a run
  folder holding a run with other settings is refused by :func:`train`, and ``compare`` keys its runs by the hash.
"""
from __future__ import annotations

from .checkpoint import (
                         CheckpointError,
                         capture_rng_state,
                         load_checkpoint,
                         load_model,
                         load_weights,
                         make_model_spec,
                         read_metadata,
                         restore_rng_state,
                         save_checkpoint,
                         save_weights,
)
from .config import DEFAULT_TTA_THRESHOLDS, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from .schedules import LRSchedule, lr_at, warmup_steps_for
from .trainer import (
                         METRIC_KEYS,
                         NON_RESULT_FIELDS,
                         RESULT_FIELDS,
                         RESULT_KEYS,
                         NonFiniteLossError,
                         amp_settings,
                         build_optimizer,
                         config_diff,
                         config_hash,
                         evaluate,
                         resolve_device,
                         result_config,
                         train,
)

__all__ = [
    "TrainConfig", "train", "evaluate", "NonFiniteLossError", "CheckpointError",
    "save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "read_metadata", "load_model",
    "make_model_spec", "result_config", "config_hash", "config_diff", "RESULT_FIELDS", "NON_RESULT_FIELDS",
    "capture_rng_state", "restore_rng_state", "LRSchedule", "lr_at", "warmup_steps_for",
    "build_optimizer", "resolve_device", "amp_settings", "METRIC_KEYS", "RESULT_KEYS",
    "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "DEFAULT_TTA_THRESHOLDS",
]
