"""The training loop behind ``blockzoo train``: :func:`train` and :func:`evaluate`.

One call of :func:`train` runs (or resumes) a whole classification training run and writes into the run directory
(a folder already holding a run is continued if its result-changing settings, :func:`result_config`, are the same,
and refused otherwise unless ``resume`` / ``overwrite`` say what to do; nothing is ever deleted silently):

* ``metrics.jsonl``: one JSON object per epoch (keys in :data:`METRIC_KEYS`);
* ``result.json``: the final summary (keys in :data:`RESULT_KEYS`), also returned as a dict;
* ``last.safetensors``: full checkpoint after every epoch (model, optimizer, global step, RNG states, trainer
  state, config), written atomically; ``best.safetensors``: weights of the best-test-accuracy epoch;
* ``steps.csv`` / ``epochs.csv`` and ``tensorboard/`` as ``--log`` asks (:mod:`blockzoo.train.logger`).

Design notes

* The learning rate is set before every optimizer step from the global step (:mod:`blockzoo.train.schedules`), so
  resuming needs only the step counter. Data order comes from ``Loader.set_epoch(epoch)``, dropout & co. from the
  restored torch RNG, so on CPU in deterministic mode ``2 epochs + resume 1`` is bit-identical to ``3 epochs``.
* Per-step losses and correct counts are accumulated in device buffers (no host sync per step on GPU); the loss is
  checked for NaN/inf every step on CPU (free) and every :data:`GPU_CHECK_EVERY` steps plus at epoch end on GPU.
  A non-finite loss raises :class:`NonFiniteLossError` before anything is written, so the last good checkpoint
  stays intact; parameters are also checked for finiteness before each checkpoint is written.
* "Training time" excludes evaluation and checkpoint I/O; time-to-accuracy is the training time at the end of the
  first epoch whose test accuracy reaches each threshold.
* Scheduled drop-path (NASNet's ScheduledDropPath, opt-in by model): every module of the model with a
  ``set_drop_progress(progress)`` method gets ``progress = global step / total steps`` (0 at the first step, rising
  linearly) before each optimizer step; the model's ``drop_path_rate`` is the final rate. Models without such
  modules train exactly as before.
* Distillation (``--distill meal_v2`` / ``ferkd``, :mod:`blockzoo.train.distill`): each step's loss comes from the
  frozen ``--teacher`` ensemble instead of the criterion; MEAL V2's discriminator is an extra group of the optimizer
  and is checkpointed in the trainer extras (``discriminator``); the teachers are never saved with the student.
* Under torchrun (more than one process) the model is wrapped in ``DistributedDataParallel``, each process trains
  on its slice of every global batch and only rank 0 writes; see :mod:`blockzoo.train.distributed`.
* Global state touched for the run (``torch.set_num_threads``, deterministic-algorithm flags, cuDNN flags,
  ``CUBLAS_WORKSPACE_CONFIG``, float32 matmul precision) is restored afterwards, also on error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.env import device_name, native_bf16
from blockzoo.errors import BlockzooError, CheckpointError, ConfigError
from blockzoo.files import atomic_write_text

from .checkpoint import (
    load_checkpoint,
    make_model_spec,
    read_metadata,
    remove_stale_temp_files,
    save_checkpoint,
    save_weights,
)
from .config import TrainConfig
from .distill import Distiller
from .distributed import DistEnv, from_environment, process_group
from .logger import EPOCHS_FILE, STEPS_FILE, RunLogger, parse_log
from .schedules import LRSchedule, warmup_steps_for
from .speedrun import Lookahead, black_pixel, predict_tta

__all__ = ["train", "evaluate", "NonFiniteLossError", "build_optimizer", "resolve_device", "amp_settings",
           "result_config", "config_hash", "config_diff", "RESULT_FIELDS", "NON_RESULT_FIELDS", "METRIC_KEYS",
           "RESULT_KEYS", "GPU_CHECK_EVERY"]

#: keys of every line of ``metrics.jsonl``: ``step`` is the global step at the end of the epoch, ``lr`` the learning
#: rate of its last step, ``epoch_time_s``/``eval_time_s`` this epoch's training/evaluation time, ``train_time_s`` and
#: ``wall_time_s`` cumulative (over resumes too), ``img_per_s`` training images per second of this epoch;
#: ``test_*`` are ``None`` on epochs without evaluation.
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
               "train_time_s", "eval_time_s", "img_per_s", "wall_time_s")
#: keys of ``result.json`` (``config_hash``: :func:`config_hash` of ``config``; ``world_size``: the number of processes
#: that trained, see :mod:`blockzoo.train.distributed`).
RESULT_KEYS = ("config", "config_hash", "model", "model_class", "params", "dataset", "train_size", "test_size",
               "epochs_completed", "steps", "final_test_acc", "final_test_loss", "final_train_loss", "final_train_acc",
               "best_test_acc", "best_epoch", "time_to_acc", "epochs_to_acc", "wall_time_s", "train_time_s",
               "eval_time_s", "img_per_s", "lr_peak", "weight_decay", "warmup_steps", "total_steps", "precision",
               "device", "device_name", "threads", "torch_version", "python_version", "deterministic",
               "resumed_from_epoch", "stopped_reason", "run_dir", "world_size", "data_fingerprint", "final_tta_acc",
               "tta_eval_time_s")
#: on CUDA, how often (in steps) the accumulated losses are checked for NaN/inf.
GPU_CHECK_EVERY = 25
#: ``--data-init``: how many training images a model's ``init_from_data`` sees (airbench's whitening: 5000).
DATA_INIT_IMAGES = 5000


class NonFiniteLossError(BlockzooError, RuntimeError):
    """The training loss became NaN or infinite. Attributes: ``epoch``, ``step`` (step within the epoch, 1-based),
    ``global_step``, ``lr``, ``loss``, ``checkpoint`` (path of the last good checkpoint or None)."""

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int, lr: float, loss: float,
                 checkpoint: str | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.lr, self.loss, self.checkpoint = lr, loss, checkpoint


# ----------------------------------------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} requested but CUDA is not available; use --device cpu (or auto)")
    return dev


def amp_settings(precision: str, device: torch.device) -> tuple[bool, torch.dtype | None, bool]:
    """``(autocast enabled, autocast dtype, use GradScaler)`` for a precision name on a device."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else ("fp16" if device.type == "cuda" else "fp32")
    if precision == "fp32":
        return False, None, False
    if precision == "amp":
        precision = "fp16" if device.type == "cuda" else "bf16"
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use --precision amp (fp16 + GradScaler) or fp32")
        return True, torch.bfloat16, False
    if precision == "fp16":
        return True, torch.float16, True
    raise ConfigError(f"unknown precision {precision!r}; expected auto, bf16, fp32, fp16 or amp")


def _autocast(device: torch.device, enabled: bool, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_lr_scales(model: nn.Module) -> dict[int, float]:
    """``{id(parameter): multiplier}`` for every parameter that a module of ``model`` declares in its
    ``param_lr_scale`` attribute (``{parameter name: multiplier}``, e.g. ``bn_init``'s BN scale at lr / 100: a plain
    module attribute, so it survives ``copy.deepcopy``); parameters not listed have multiplier 1."""
    out: dict[int, float] = {}
    for m in model.modules():
        for name, s in getattr(m, "param_lr_scale", {}).items():
            p = getattr(m, name, None)
            if isinstance(p, nn.Parameter):
                out[id(p)] = float(s)
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over two parameter groups: with weight decay (weights of >= 2 dims) and without
    (biases, norm scales/shifts and other 1-D/0-D parameters, and those a module lists in ``no_weight_decay_params``),
    unless ``cfg.wd_norm_bias`` puts all but the listed ones in the first.
    With ``cfg.norm_lr_scale != 1`` the parameters of norm layers form a third group whose learning rate is scaled
    by it (each group's ``lr_scale``, applied at every step) and whose weight decay is divided by it (the same decay
    per step). Parameters a block declares a learning-rate multiplier for (:func:`param_lr_scales`) form their own
    group with ``lr_scale`` times it. Expects a resolved config (``lr``/``weight_decay`` not None)."""
    scale = float(cfg.norm_lr_scale)
    norm_ids = ({id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)}
                if scale != 1.0 else set())
    # parameters a block marks as never decayed (``no_weight_decay_params``: hyper-connections' static weights)
    fixed = {id(getattr(m, n)) for m in model.modules() for n in getattr(m, "no_weight_decay_params", ())}
    decay, no_decay, norm = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in norm_ids:
            norm.append(p)
        elif id(p) in fixed or (not cfg.wd_norm_bias and (p.ndim <= 1 or name.endswith(".bias"))):
            no_decay.append(p)
        else:
            decay.append(p)
    wd = float(cfg.weight_decay or 0.0)
    own = param_lr_scales(model)
    groups = []
    for params, group_wd, group_scale in ((decay, wd, 1.0), (no_decay, 0.0, 1.0),
                                          (norm, wd / scale if cfg.wd_norm_bias else 0.0, scale)):
        by_scale: dict[float, list[nn.Parameter]] = {}   # a block's declared multiplier splits its group
        for p in params:
            by_scale.setdefault(own.get(id(p), 1.0), []).append(p)
        groups += [{"params": ps, "weight_decay": group_wd, "lr_scale": group_scale * s} for s, ps in by_scale.items()]
    if not groups:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters")
    lr = float(cfg.lr)  # type: ignore[arg-type]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; expected sgd or adamw")


@contextlib.contextmanager
def _global_settings(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Apply thread count / determinism / cuDNN / TF32 settings for the run and restore them afterwards."""
    saved = {
        "threads": torch.get_num_threads(),
        "det": torch.are_deterministic_algorithms_enabled(),
        "det_warn": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_det": torch.backends.cudnn.deterministic,
        "cudnn_bench": torch.backends.cudnn.benchmark,
        "matmul_prec": torch.get_float32_matmul_precision(),
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    try:
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        if cfg.deterministic:
            if saved["cublas"] is None:
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # required by deterministic cuBLAS
            # strict on CPU (the bit-exact resume guarantee); on GPUs some kernels (e.g. adaptive-avg-pool backward)
            # have no deterministic version, so they warn instead of failing the run
            torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls on Ampere+
        yield
    finally:
        torch.set_num_threads(saved["threads"])
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != (
                saved["det"], saved["det_warn"]):   # only when changed: the call imports torch._inductor (~3 s)
            torch.use_deterministic_algorithms(saved["det"], warn_only=saved["det_warn"])
        torch.backends.cudnn.deterministic = saved["cudnn_det"]
        torch.backends.cudnn.benchmark = saved["cudnn_bench"]
        torch.set_float32_matmul_precision(saved["matmul_prec"])
        if saved["cublas"] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved["cublas"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _thr_key(t: float) -> str:
    return f"{float(t):.2f}" if round(float(t), 2) == float(t) else repr(float(t))


# ---------------------------------------------------------------------------------------------------------- evaluate
def _to_eval(model: nn.Module) -> bool:
    """Put ``model`` in eval mode; True for a ``torch.export`` graph (an exported or PT2E-quantized model), which
    rejects ``.eval()``: torchao's ``move_exported_model_to_eval`` switches its dropout and BatchNorm ops instead
    (without torchao, which the graphs of ``blockzoo.deploy.quantize`` need anyway, the graph runs as it was
    exported), and it stays so (its training form is the one its exporter traced)."""
    try:
        model.eval()
        return False
    except NotImplementedError:
        try:
            from torchao.quantization.pt2e import move_exported_model_to_eval
        except ImportError:
            return True
        move_exported_model_to_eval(model)
        return True


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, *, precision: str = "fp32", device: str | torch.device = "cpu",
             max_batches: int | None = None, num_classes: int | None = None,
             dist: DistEnv | None = None, tta_level: int = 0) -> dict[str, Any]:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy of ``model`` over ``loader`` (batches of
    ``(x, y)`` already on ``device``). Runs in eval mode (restored afterwards) with one host sync at the end.
    Returns ``{"loss", "acc", "n"}``; with ``num_classes`` also ``"confusion"``: the ``num_classes`` x
    ``num_classes`` counts (row: true class, column: predicted class) as nested lists. ``dist``: each process
    evaluated its shard of the test set; the totals are summed over the processes (a collective call).
    ``tta_level``: test-time augmentation (:func:`blockzoo.train.speedrun.predict_tta`; shifted images are filled
    with the normalised black of the loader's dataset)."""
    device = torch.device(device)
    enabled, dtype, _ = amp_settings(precision, device)
    was_training = model.training
    exported = _to_eval(model)
    loss_sum = torch.zeros((), device=device, dtype=torch.float32)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    confusion = None if num_classes is None else torch.zeros(num_classes * num_classes, device=device,
                                                             dtype=torch.int64)
    n = 0
    pad = black_pixel(loader.dataset).to(device) if tta_level else 0.0
    try:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            with _autocast(device, enabled, dtype):
                out = predict_tta(model, x, tta_level, pad) if tta_level else model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            pred = out.argmax(1)
            correct += (pred == y).sum()
            if confusion is not None:
                confusion += torch.bincount(y * num_classes + pred, minlength=confusion.numel())
            n += int(y.shape[0])
    finally:
        if not exported:
            model.train(was_training)
    if dist is not None:
        loss_sum, correct, n = dist.sum_totals(loss_sum, correct, n)
        if confusion is not None:
            dist.sum_(confusion)
    if n == 0:
        raise ValueError("evaluate(): the loader yielded no batches")
    res: dict[str, Any] = {"loss": float(loss_sum.item()) / n, "acc": float(correct.item()) / n, "n": n}
    if confusion is not None:
        res["confusion"] = confusion.view(num_classes, num_classes).tolist()
    return res


# ---------------------------------------------------------------------------------------------------------- progress
class _Progress:
    """Rich progress bar over all steps of the run (loss, acc, images/s, ETA) or a no-op."""

    def __init__(self, enabled: bool, console: Any, total: int, completed: int) -> None:
        self.enabled = enabled
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self.console = console if console is not None else Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[ips]} img/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self._task = self._bar.add_task("train", total=total, completed=completed, loss="-", acc="-", ips="-")
        self._bar.start()

    def step(self, description: str, **fields: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description, **fields)

    def log(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# ------------------------------------------------------------------------------------------------------------- train
def _nonfinite_error(*, loss: float, epoch: int, step_in_epoch: int, global_step: int, lr: float, cfg: TrainConfig,
                     ckpt: Path | None, ckpt_epoch: int | None, what: str = "loss") -> NonFiniteLossError:
    kept = (f"the last good checkpoint {str(ckpt)!r} (epoch {ckpt_epoch}) is kept intact; fix the settings and "
            f"rerun with --resume to continue from it, or start over"
            if ckpt is not None else "no checkpoint was written yet")
    tips = [f"lower --lr (e.g. {lr / 2:.3g} or less)", "a longer --warmup-epochs"]
    if cfg.precision != "fp32":
        tips.append("--precision fp32")
    if cfg.clip_grad_norm is None:
        tips.append("--clip-grad-norm 1.0")
    msg = (f"non-finite training {what} ({loss}) at epoch {epoch}, step {step_in_epoch} (global step {global_step}), "
           f"lr={lr:.4g}; training stopped. {kept}. Try: {', '.join(tips)}.")
    return NonFiniteLossError(msg, epoch=epoch, step=step_in_epoch, global_step=global_step, lr=lr, loss=loss,
                              checkpoint=str(ckpt) if ckpt is not None else None)


# ------------------------------------------------------------------------------------------ the result-changing config
#: TrainConfig fields that do not change a run's result: where it is written, shown and logged, the thread count, the
#: device, where the data lives (and whether its checksums are checked) and the resume / overwrite / checkpoint
#: switches. Every other field changes the result.
NON_RESULT_FIELDS = frozenset({"progress", "out_dir", "threads", "device", "data_dir", "verify", "resume",
                               "overwrite", "checkpoint", "log"})
RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NON_RESULT_FIELDS)
_FIELD_DEFAULTS = TrainConfig().to_dict()


def _canonical(o: Any) -> Any:
    """JSON-stable form: dict keys sorted, tuples as lists, integral floats as ints, callables by qualified name."""
    if isinstance(o, dict):
        return {str(k): _canonical(o[k]) for k in sorted(o, key=str)}
    if isinstance(o, (list, tuple)):
        return [_canonical(v) for v in o]
    if isinstance(o, np.generic):
        return _canonical(o.item())
    if isinstance(o, float) and o.is_integer():
        return int(o)
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    if callable(o):
        return f"<callable {getattr(o, '__module__', '?')}.{getattr(o, '__qualname__', type(o).__name__)}>"
    return repr(o)


def result_config(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cfg`` that change the result (:data:`RESULT_FIELDS`), resolved and canonical. ``cfg`` is a
    :class:`TrainConfig` or a stored config dict (``result.json``'s or a checkpoint's ``config``; a missing field
    counts as its default). Two runs with equal result configs give the same result; compare and the trainer's
    resume check both decide by it."""
    d = cfg.resolved().to_dict() if isinstance(cfg, TrainConfig) else {**_FIELD_DEFAULTS, **cfg}
    return _canonical({k: d[k] for k in RESULT_FIELDS})


def config_hash(cfg: TrainConfig | dict[str, Any]) -> str:
    """8 hex digits of the SHA-256 of the fields of :func:`result_config` that differ from their defaults (compare
    keys its run folders by it): a new option whose default keeps the old behaviour leaves every hash as it was."""
    defaults = _canonical({k: _FIELD_DEFAULTS[k] for k in RESULT_FIELDS})
    changed = {k: v for k, v in result_config(cfg).items() if v != defaults[k]}
    blob = json.dumps(changed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def config_diff(old: TrainConfig | dict[str, Any], new: TrainConfig | dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, old value, new value)`` for every result-changing field that differs."""
    a, b = result_config(old), result_config(new)
    return [(k, a[k], b[k]) for k in RESULT_FIELDS if a[k] != b[k]]


# ------------------------------------------------------------------------------------------------- the run folder
RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "result.json", STEPS_FILE, EPOCHS_FILE)


@dataclass(frozen=True)
class _RunFiles:
    dir: Path

    @property
    def last(self) -> Path:
        return self.dir / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.dir / "best.safetensors"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.dir / "result.json"


def _stored_config(files: _RunFiles) -> dict[str, Any]:
    """The config of the run in the folder: its checkpoint's (the live state) or else its result.json's."""
    if files.last.exists():
        cfg = read_metadata(files.last).get("config")
        where = files.last
    else:
        try:
            cfg = json.loads(files.result.read_text(encoding="utf-8")).get("config")
        except (OSError, json.JSONDecodeError, AttributeError):
            cfg = None
        where = files.result
    if not isinstance(cfg, dict):
        raise ConfigError(f"{str(where)!r} does not record the settings of its run; pass --overwrite to replace the "
                          f"run in {str(files.dir)!r} or choose another --out.")
    return cfg


def _stored_fingerprint(files: _RunFiles) -> str | None:
    """The image-folder fingerprint the run in the folder was trained with (``None``: a registered dataset, or a run
    from before fingerprints)."""
    try:
        if files.last.exists():
            return (read_metadata(files.last).get("extra") or {}).get("trainer", {}).get("data_fingerprint")
        return json.loads(files.result.read_text(encoding="utf-8")).get("data_fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _plan_run(cfg: TrainConfig, files: _RunFiles, data_fp: str | None = None) -> str:
    """What to do with the run folder: ``"fresh"`` (start over), ``"resume"`` (continue its checkpoint) or
    ``"report"`` (a finished run without checkpoint: return its result.json); ``cfg`` is validated, so --resume and
    --overwrite are not both set. Reads files, never changes one:
    a folder holding a run with other settings, or trained on an image folder whose contents have changed since
    (``data_fp``: :func:`blockzoo.data.data_fingerprint`), is refused here, before anything is touched."""
    has_ckpt, has_result = files.last.exists(), files.result.exists()
    if cfg.overwrite or not (has_ckpt or has_result):
        return "fresh"
    if cfg.resume and has_ckpt:
        return "resume"
    diff = config_diff(_stored_config(files), cfg)
    if diff:
        changes = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in diff)
        fixes = ("pass --resume to continue it with the new settings, --overwrite to replace it, or choose another "
                 "--out" if has_ckpt else "it has no checkpoint to resume: pass --overwrite to replace it or choose "
                 "another --out")
        raise ConfigError(f"{str(files.dir)!r} already holds a run with other settings ({changes}); {fixes}.")
    stored_fp = _stored_fingerprint(files) if data_fp is not None else None
    if stored_fp is not None and stored_fp != data_fp:
        raise ConfigError(f"{str(files.dir)!r} holds a run trained on the image folder {cfg.data!r} as it was: its "
                          f"files have changed since (added, removed or modified); pass --overwrite to train again "
                          f"on the folder as it is now{', or --resume to continue on it' if has_ckpt else ''}, or "
                          f"choose another --out.")
    return "resume" if has_ckpt else "report"


def _rewrite_metrics(path: Path, keep_upto_epoch: int) -> None:
    """Keep only the metrics lines of epochs <= ``keep_upto_epoch`` (lines a killed run wrote after its last
    checkpoint are dropped); 0 -> empty file."""
    lines: list[str] = []
    if keep_upto_epoch > 0 and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["epoch"]) <= keep_upto_epoch:
                    lines.append(line)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn last line from a killed run
    atomic_write_text(path, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig, model: nn.Module | None = None, train_set: Any = None, test_set: Any = None, *,
          console: Any = None, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a classifier into ``cfg.out_dir`` and return the result dict (also in result.json).

    The run folder decides what happens: empty -> a new run; it holds a run with the same result-changing settings
    (:func:`result_config`) -> that run continues from its checkpoint (a finished one is only re-reported), so
    re-running an interrupted command resumes it; it holds a run with other settings -> :class:`ConfigError`
    naming them, unless ``cfg.resume`` (continue it with the new settings, with a warning) or ``cfg.overwrite``
    (replace it). Stale temporary files of a killed write are removed when a run starts or resumes.

    ``model``: a ready ``nn.Module`` (trained in place), or ``None`` to build ``cfg.model`` with ``cfg.slots`` via
    ``blockzoo.create_model`` (after seeding; the weights files then carry a ``model_spec`` for
    :func:`blockzoo.load_model`). ``train_set``/``test_set``: :class:`blockzoo.data.Dataset` objects, or ``None``
    to load ``cfg.data`` (``cfg.subset`` / ``cfg.test_subset`` apply only then). ``console``: a
    ``rich.console.Console`` for the progress bar (default: stderr). ``on_epoch_end(metrics)`` is called after each
    epoch's metrics line and checkpoint are written (raising in it aborts the run, leaving a resumable checkpoint).

    Under ``torchrun`` every process calls :func:`train` with the same ``cfg``: they train one
    ``DistributedDataParallel`` model on disjoint shards of each global batch of ``cfg.batch_size`` images, and only
    rank 0 writes (:mod:`blockzoo.train.distributed`).

    Raises :class:`NonFiniteLossError` on NaN/inf loss and :class:`~blockzoo.train.CheckpointError` if a checkpoint
    to resume from is corrupt or does not match.
    """
    wall_start = time.perf_counter()
    cfg = cfg.resolved()
    dist = from_environment(resolve_device(cfg.device))  # under torchrun: this process's rank and device
    device = dist.device
    amp = amp_settings(cfg.precision, device)  # an unsupported precision fails before any data is loaded
    files = _RunFiles(Path(cfg.out_dir))  # type: ignore[arg-type]
    from blockzoo.data import data_fingerprint
    data_fp = data_fingerprint(cfg.data)  # an image folder's contents (a registered dataset: None)
    plan = _plan_run(cfg, files, data_fp)
    if plan == "report":
        return json.loads(files.result.read_text(encoding="utf-8"))
    with process_group(dist), _global_settings(cfg, device):
        _seed_everything(cfg.seed)
        train_set, test_set = _load_data(cfg, train_set, test_set)
        model, model_name, spec = _prepare_model(cfg, model, train_set)
        run = _Run(cfg, device, amp, files, model, model_name, spec, train_set, test_set, wall_start, dist)
        run.open_run_dir(resume=plan == "resume")
        run.st["data_fingerprint"] = data_fp     # checkpointed with the trainer state, reported in result.json
        run.train_epochs(console, on_epoch_end)
        run.evaluate_if_needed()
        result = run.result()
    if dist.is_main:
        atomic_write_text(files.result, json.dumps(result, indent=2, default=_json_default) + "\n")
    return result


def _load_data(cfg: TrainConfig, train_set: Any, test_set: Any) -> tuple[Any, Any]:
    from blockzoo.data import load_split

    if train_set is None:
        train_set = load_split(cfg, "train")
    if test_set is None:
        test_set = load_split(cfg, "test")
    return train_set, test_set


def _prepare_model(cfg: TrainConfig, model: nn.Module | None,
                   train_set: Any) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """``(model, its name, its model_spec)``: ``model`` as given (no spec: how it was built is unknown) or
    ``cfg.model`` built from the registry."""
    if model is not None:
        if cfg.pretrained or cfg.checkpoint_path:
            raise ConfigError("--pretrained / --checkpoint-path load weights into the model train() builds from "
                              "--model; load them into a ready-made model yourself (create_model(..., "
                              "checkpoint_path=...))")
        return model, str(getattr(model, "model_name", None) or type(model).__name__), None
    from blockzoo.registry import create_model

    size = tuple(train_set.image_size)
    spec = make_model_spec(cfg.model, slots=cfg.slots, model_kwargs=cfg.model_kwargs,
                           num_classes=int(train_set.num_classes), in_chans=int(train_set.in_chans), img_size=size)
    model = create_model(cfg.model, num_classes=int(train_set.num_classes), in_chans=int(train_set.in_chans),
                         img_size=size, pretrained=cfg.pretrained, checkpoint_path=cfg.checkpoint_path,
                         **{**cfg.model_kwargs, **cfg.slots})
    return model, cfg.model, spec


def _hard_labels(y: torch.Tensor) -> torch.Tensor:
    """The class of each training sample: ``y`` itself, or the dominant class of MixUp / CutMix soft targets
    (B x num_classes), which the train accuracy is then measured against."""
    return y.argmax(1) if y.dim() == 2 else y


class _Run:
    """One training run between :func:`train`'s steps: model, optimizer, loaders, schedule and the trainer state
    ``st`` (checkpointed under ``extra["trainer"]``)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: tuple[bool, torch.dtype | None, bool],
                 files: _RunFiles, model: nn.Module, model_name: str, spec: dict[str, Any] | None, train_set: Any,
                 test_set: Any, wall_start: float, dist: DistEnv) -> None:
        from blockzoo.data import Loader

        self.cfg, self.device, self.files, self.wall_start, self.dist = cfg, device, files, wall_start, dist
        self.model, self.model_name, self.spec = model, model_name, spec
        self.train_set, self.test_set = train_set, test_set
        self.amp_on, self.amp_dtype, self.use_scaler = amp
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        self.net = dist.wrap(model, sync_bn=cfg.sync_bn)  # the module to train: DDP(model) under torchrun
        self.optimizer = build_optimizer(model, cfg)
        # --distill: the frozen teachers (and MEAL V2's discriminator, a group of the optimizer); usually none
        self.distiller = None if cfg.distill == "none" else Distiller(cfg, train_set, device, dist.world_size)
        if self.distiller is not None:
            self.distiller.add_param_groups(self.optimizer)
        self.scaler = torch.amp.GradScaler(device.type) if self.use_scaler else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        shard = (dist.rank, dist.world_size)  # every process takes its slice of each global batch
        dist.per_process_batch(cfg.batch_size, "--batch-size")
        dist.per_process_batch(int(cfg.eval_batch_size), "--eval-batch-size")  # type: ignore[arg-type]
        self.train_loader = Loader(train_set, cfg.batch_size, train=True, augment=cfg.augment, seed=cfg.seed,
                                   device=device, channels_last=cfg.channels_last, shard=shard, aa=cfg.aa,
                                   reprob=cfg.reprob, mixup=cfg.mixup, cutmix=cfg.cutmix)
        self.test_loader = Loader(test_set, int(cfg.eval_batch_size), train=False,  # type: ignore[arg-type]
                                  seed=cfg.seed, device=device, channels_last=cfg.channels_last, shard=shard)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the training set ({len(train_set)} images) gives no full batch of {cfg.batch_size}; "
                             f"lower --batch-size")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = warmup_steps_for(cfg.warmup_epochs, self.steps_per_epoch, self.total_steps)
        self.schedule = LRSchedule(float(cfg.lr), self.total_steps, self.warmup, cfg.schedule)  # type: ignore[arg-type]
        self.thresholds = sorted({float(t) for t in cfg.tta_thresholds})
        self.st: dict[str, Any] = {"train_time_s": 0.0, "eval_time_s": 0.0, "wall_time_s": 0.0, "images": 0,
                                   "best_acc": None, "best_epoch": None, "tta": {}, "last_eval": None,
                                   "last_train": None, "stopped_reason": None, "max_steps_per_epoch": 0}
        self.start_epoch, self.global_step, self.resumed_from = 0, 0, None
        self.ckpt_epoch: int | None = None  # epoch of the checkpoint on disk that belongs to this run
        self.epoch_reached = 0
        self.loss_buf = torch.zeros(self.steps_per_epoch, device=device, dtype=torch.float32)
        self.correct_buf = torch.zeros(self.steps_per_epoch, device=device, dtype=torch.int64)
        self.check_every = 1 if device.type == "cpu" else GPU_CHECK_EVERY
        self.lookahead = Lookahead(model) if cfg.lookahead else None
        # the modules whose drop-path rate follows training progress (ScheduledDropPath); usually none
        self.drop_progress = [m for m in model.modules() if callable(getattr(m, "set_drop_progress", None))]
        # a missing TensorBoard fails here, before any work; only rank 0 logs
        self.logger = RunLogger(files.dir, parse_log(cfg.log) if dist.is_main else ())

    # -------------------------------------------------------------------------------------------- run folder
    def open_run_dir(self, *, resume: bool) -> None:
        """Create the folder (only now: a bad --data / --model leaves none), remove stale temporary files, then
        restore the checkpoint (``resume``) or remove the files of the run this one replaces."""
        files, main = self.files, self.dist.is_main  # under torchrun only rank 0 touches files; all restore
        if main:
            files.dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(files.dir, RUN_FILES)
        if resume:
            self._restore()
        elif main:
            for stale in (files.last, files.best, files.result):
                stale.unlink(missing_ok=True)
        if main:
            _rewrite_metrics(files.metrics, self.start_epoch)
        self.logger.open(epoch=self.start_epoch, step=self.global_step)
        self.dist.barrier()
        self.prev_wall = float(self.st["wall_time_s"])
        self.epoch_reached = self.start_epoch

    def _restore(self) -> None:
        meta = load_checkpoint(self.files.last, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                               restore_rng=True, map_location="cpu")
        saved = meta["config"]
        diff = [k for k, _, _ in config_diff(saved, self.cfg)] if saved is not None else []
        if diff:
            warnings.warn(f"resuming {str(self.files.last)!r} with changed settings {diff}; the run will not match "
                          f"an uninterrupted one", stacklevel=4)
        trainer_state = meta["extra"].get("trainer", {})
        if not isinstance(trainer_state, dict):
            raise CheckpointError(f"{str(self.files.last)!r} has an invalid trainer state; the file is corrupt. Fix: "
                                  f"delete it, or rerun with --overwrite to start from scratch")
        self.st.update(trainer_state)
        if self.lookahead is not None:
            ema = meta["extra"].get("lookahead")
            if not isinstance(ema, dict) or set(ema) != set(self.lookahead.ema):
                raise CheckpointError(f"{str(self.files.last)!r} holds no lookahead average for this model (saved "
                                      f"without --lookahead?). Fix: rerun with the settings it was saved with, or "
                                      f"with --overwrite to start from scratch")
            self.lookahead.ema = {k: v.to(self.device) for k, v in ema.items()}
        if self.distiller is not None:
            self.distiller.load_state(meta["extra"], str(self.files.last))
        if "max_steps_per_epoch" not in trainer_state:  # written by an older blockzoo: the step count bounds it
            self.st["max_steps_per_epoch"] = int(meta["step"])
        self.start_epoch = self.resumed_from = self.ckpt_epoch = int(meta["epoch"])
        self.global_step = int(meta["step"])

    # ------------------------------------------------------------------------------------------------ epochs
    def train_epochs(self, console: Any, on_epoch_end: Callable[[dict[str, Any]], None] | None) -> None:
        cfg = self.cfg
        # a run stopped by its time budget is finished: resuming it only re-reports
        first_epoch = cfg.epochs + 1 if self.st.get("stopped_reason") else self.start_epoch + 1
        self.st["max_steps_per_epoch"] = max(int(self.st["max_steps_per_epoch"]), self.steps_per_epoch)
        bar = _Progress(cfg.progress and self.dist.is_main, console, self.total_steps,
                        min(self.global_step, self.total_steps))
        if self.start_epoch == 0 and self.global_step == 0:
            self._data_init()
            self._gradinit()
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                self.epoch_reached = epoch
                ep = self._train_epoch(epoch, bar)
                metrics = self._finish_epoch(epoch, ep, bar)
                if on_epoch_end is not None:
                    on_epoch_end(dict(metrics))
                if self.st["stopped_reason"] is not None:
                    break
        finally:
            bar.close()
            self.logger.close()

    def _data_init(self) -> None:
        """``--data-init`` on a new run: the model's ``init_from_data(images)`` with the first
        :data:`DATA_INIT_IMAGES` images of a seeded class-stratified draw of the training set (normalised, no
        augmentation), timed as training (the same images on every process)."""
        init = getattr(self.model, "init_from_data", None)
        if not self.cfg.data_init or init is None:
            return
        from blockzoo.data import Loader, take_subset

        t0 = time.perf_counter()
        ds = self.train_set
        if len(ds) > DATA_INIT_IMAGES:
            ds = take_subset(ds, DATA_INIT_IMAGES, self.cfg.seed)
        x, _ = next(iter(Loader(ds, len(ds), train=False, device=self.device)))
        init(x)
        self.st["train_time_s"] = float(self.st["train_time_s"]) + time.perf_counter() - t0

    def _gradinit(self) -> None:
        """``--gradinit N`` on a new run: :func:`blockzoo.train.gradinit.gradinit` for N iterations with the run's
        optimizer (AdamW's first step is Adam's) and peak lr, on half-batches of the training set drawn with the
        run's seed (crop + flip as --augment, no batch augmentation; the same on every process), in fp32, timed as
        training; the learned scales are kept in the checkpointed trainer state (``gradinit_scales``)."""
        if self.cfg.gradinit == 0:
            return
        from blockzoo.data import Loader

        from .gradinit import gradinit

        t0 = time.perf_counter()
        half = Loader(self.train_set, max(1, self.cfg.batch_size // 2), train=True, augment=self.cfg.augment,
                      seed=self.cfg.seed, device=self.device, channels_last=self.cfg.channels_last)
        self.st["gradinit_scales"] = gradinit(
            self.model, half, opt="adam" if self.cfg.optimizer == "adamw" else "sgd", lr=float(self.cfg.lr),
            iters=self.cfg.gradinit, meta_lr=self.cfg.gradinit_lr,
            loss_fn=nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing))
        if self.lookahead is not None:                   # the average starts from the rescaled weights
            self.lookahead = Lookahead(self.model)
        self.st["train_time_s"] = float(self.st["train_time_s"]) + time.perf_counter() - t0

    def _train_epoch(self, epoch: int, bar: _Progress) -> dict[str, Any]:
        """One pass over the training loader (stopping early at the time budget); returns the epoch's counters.
        With ``--data-init`` a model's ``on_train_epoch(epoch)`` is called first (SpeedNet freezes its whitening
        bias after airbench's 3 epochs)."""
        cfg, st = self.cfg, self.st
        if cfg.data_init and hasattr(self.model, "on_train_epoch"):
            self.model.on_train_epoch(epoch)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch - 1)
        self.dist.seed_stochastic_layers(cfg.seed, epoch)
        self.model.train()
        self.loss_buf.zero_()
        self.correct_buf.zero_()
        ep = {"images": 0, "steps": 0, "checked": 0, "lr": self.schedule(self.global_step)}
        budget_left = None if cfg.max_train_time_s is None else cfg.max_train_time_s - float(st["train_time_s"])
        t0 = last_ui = last_step = time.perf_counter()
        for i, (x, y) in enumerate(self.train_loader):
            if i >= self.steps_per_epoch:
                break
            self._step(x, y, i, epoch, ep)
            now = time.perf_counter()
            self.logger.log_step(self.global_step, epoch, self.loss_buf[i], ep["lr"],
                                 int(y.shape[0]) * self.dist.world_size, now - last_step)
            last_step = now
            if bar.enabled:
                fields: dict[str, str] = {}
                if now - last_ui > 0.5 or ep["steps"] == self.steps_per_epoch:
                    last_ui = now
                    n = ep["steps"]
                    fields = {"loss": f"{self.loss_buf[:n].mean().item():.4f}",
                              "acc": f"{self.correct_buf[:n].sum().item() / ep['images']:.4f}",
                              "ips": f"{ep['images'] / max(now - t0, 1e-9):.0f}"}
                bar.step(f"epoch {epoch}/{cfg.epochs}", **fields)
            if budget_left is not None and self.dist.any(now - t0 >= budget_left):  # all processes stop together
                st["stopped_reason"] = "max_train_time_s"
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ep["time"] = time.perf_counter() - t0
        if ep["steps"] == 0:
            raise RuntimeError("the training loader yielded no batches")
        return ep

    def _step(self, x: torch.Tensor, y: torch.Tensor, i: int, epoch: int, ep: dict[str, Any]) -> None:
        """Optimizer step ``i`` of the epoch: lr from the global step, forward, NaN check, backward, update."""
        cfg, model, optimizer, scaler = self.cfg, self.model, self.optimizer, self.scaler
        lr = ep["lr"] = self.schedule(self.global_step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        for m in self.drop_progress:
            m.set_drop_progress(self.global_step / self.total_steps)
        with _autocast(self.device, self.amp_on, self.amp_dtype):
            if self.distiller is None:
                out = self.net(x)
                loss = self.criterion(out.float(), y)
            else:
                out, loss = self.distiller.step_loss(self.net, x, y, self.global_step)
        self.loss_buf[i] = loss.detach()
        if self.check_every == 1:
            if not math.isfinite(self.loss_buf[i].item()):
                raise self._nonfinite(self.loss_buf[i].item(), epoch, i + 1, self.global_step + 1, lr)
        elif (i + 1) % self.check_every == 0:
            self._check_buffer(ep["checked"], i + 1, epoch, self.global_step - i)
            ep["checked"] = i + 1
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if cfg.clip_grad_norm is not None or cfg.grad_noise > 0:
                scaler.unscale_(optimizer)
            self._add_grad_noise()
            if cfg.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            self._add_grad_noise()
            if cfg.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
        self.correct_buf[i] = (out.detach().argmax(1) == _hard_labels(y)).sum()
        ep["images"] += int(y.shape[0])
        ep["steps"] = i + 1
        self.global_step += 1
        if self.lookahead is not None:
            self.lookahead.step(model, self.global_step, self.total_steps)

    def _add_grad_noise(self) -> None:
        """``--grad-noise``: g += N(0, eta / (1 + t)^gamma) on every gradient (t = global step, from 0), after the
        gradients are averaged over processes and unscaled, before clipping. The noise is drawn from a generator seeded
        by (seed, t) alone, so it is the same on every process and a resumed run draws what the uninterrupted one
        did."""
        eta = self.cfg.grad_noise
        if eta <= 0:
            return
        std = math.sqrt(eta / (1 + self.global_step) ** self.cfg.grad_noise_decay)
        gen = torch.Generator(device=self.device)
        gen.manual_seed((self.cfg.seed * 1_000_003 + self.global_step) % 2**63)
        with torch.no_grad():
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.add_(torch.randn(p.grad.shape, generator=gen, device=p.grad.device, dtype=p.grad.dtype),
                                alpha=std)

    def _finish_epoch(self, epoch: int, ep: dict[str, Any], bar: _Progress) -> dict[str, Any]:
        """Account the epoch, evaluate it when due, write its metrics line and checkpoint; returns the metrics."""
        cfg, st, n_steps = self.cfg, self.st, ep["steps"]
        self._check_buffer(ep["checked"], n_steps, epoch, self.global_step - n_steps)
        ep["images"] = self.dist.reduce_epoch(self.loss_buf[:n_steps], self.correct_buf[:n_steps], ep["images"])
        st["train_time_s"] = float(st["train_time_s"]) + ep["time"]
        st["images"] = int(st["images"]) + ep["images"]
        train_loss = float(self.loss_buf[:n_steps].sum().item()) / n_steps
        train_acc = float(self.correct_buf[:n_steps].sum().item()) / ep["images"]
        st["last_train"] = {"loss": train_loss, "acc": train_acc}
        last_epoch = epoch == cfg.epochs or st["stopped_reason"] is not None
        if last_epoch and self.lookahead is not None:
            self.lookahead.update(self.model, 1.0)   # the run's result is the averaged weights
        test, eval_time = None, 0.0
        if epoch % cfg.eval_every == 0 or last_epoch:
            test, eval_time = self._evaluate_epoch(epoch, ep)
        st["wall_time_s"] = self.prev_wall + time.perf_counter() - self.wall_start
        metrics = {
            "epoch": epoch, "step": self.global_step, "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test["loss"] if test else None, "test_acc": test["acc"] if test else None,
            "lr": ep["lr"], "epoch_time_s": ep["time"], "train_time_s": st["train_time_s"],
            "eval_time_s": eval_time, "img_per_s": ep["images"] / ep["time"] if ep["time"] > 0 else None,
            "wall_time_s": st["wall_time_s"],
        }
        if self.dist.is_main:
            with open(self.files.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics, default=_json_default) + "\n")
        self.logger.log_epoch(metrics)
        if cfg.checkpoint:
            self._save_checkpoint(epoch, ep)
        if bar.enabled:
            bar.log(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                    + (f"  test loss {test['loss']:.4f} acc {test['acc']:.4f}" if test else "")
                    + f"  lr {ep['lr']:.3g}  {metrics['img_per_s'] or 0:.0f} img/s  {ep['time']:.1f}s")
        return metrics

    def _evaluate_epoch(self, epoch: int, ep: dict[str, Any]) -> tuple[dict[str, float], float]:
        """Test the model; keep the best weights and the time-to-accuracy marks. Returns ``(test, eval time)``."""
        cfg, st = self.cfg, self.st
        te = time.perf_counter()
        test = evaluate(self.model, self.test_loader, precision=cfg.precision, device=self.device, dist=self.dist)
        eval_time = time.perf_counter() - te
        st["eval_time_s"] = float(st["eval_time_s"]) + eval_time
        st["last_eval"] = {"epoch": epoch, **test}
        if not math.isfinite(test["loss"]):
            raise self._nonfinite(test["loss"], epoch, ep["steps"], self.global_step, ep["lr"], what="test loss")
        if st["best_acc"] is None or test["acc"] > st["best_acc"]:
            st["best_acc"], st["best_epoch"] = test["acc"], epoch
            if cfg.checkpoint and self.dist.is_main:
                save_weights(self.files.best, self.model, model_spec=self.spec,
                             metadata={"epoch": epoch, "test_acc": test["acc"], "model": self.model_name})
        for t in self.thresholds:
            if test["acc"] >= t and _thr_key(t) not in st["tta"]:
                st["tta"][_thr_key(t)] = {"train_time_s": st["train_time_s"], "epoch": epoch}
        return test, eval_time

    def _save_checkpoint(self, epoch: int, ep: dict[str, Any]) -> None:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise self._nonfinite(float("nan"), epoch, ep["steps"], self.global_step, ep["lr"],
                                  what=f"parameters ({', '.join(bad[:3])})")
        if self.dist.is_main:
            save_checkpoint(self.files.last, model=self.model, optimizer=self.optimizer, step=self.global_step,
                            epoch=epoch, config=self.cfg.to_dict(), best_metric=self.st["best_acc"],
                            scaler=self.scaler, extra={"trainer": self.st, **self._lookahead_state(),
                                                       **(self.distiller.state() if self.distiller else {})},
                            model_spec=self.spec,
                            steps_per_epoch=int(self.st["max_steps_per_epoch"]))
        self.dist.barrier()  # every process goes on only once the checkpoint is complete
        self.ckpt_epoch = epoch

    def _lookahead_state(self) -> dict[str, Any]:
        return {"lookahead": self.lookahead.ema} if self.lookahead is not None else {}

    # ---------------------------------------------------------------------------------------------- NaN checks
    def _nonfinite(self, loss: float, epoch: int, step_in_epoch: int, global_step: int, lr: float,
                   what: str = "loss") -> NonFiniteLossError:
        return _nonfinite_error(loss=loss, epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step, lr=lr,
                                cfg=self.cfg, ckpt=self.files.last if self.ckpt_epoch is not None else None,
                                ckpt_epoch=self.ckpt_epoch, what=what)

    def _check_buffer(self, lo: int, hi: int, epoch: int, first_global_step: int) -> None:
        """Raise NonFiniteLossError if any of ``loss_buf[lo:hi]`` is NaN/inf (one host sync)."""
        if hi <= lo:
            return
        seg = self.loss_buf[lo:hi]
        if bool(torch.isfinite(seg).all().item()):
            return
        j = int((~torch.isfinite(seg)).nonzero()[0].item()) + lo  # first bad step (0-based, in epoch)
        g = first_global_step + j
        raise self._nonfinite(float(self.loss_buf[j].item()), epoch, j + 1, g + 1, self.schedule(g))

    # ------------------------------------------------------------------------------------------------- result
    def evaluate_if_needed(self) -> None:
        """Evaluate once more when the last epoch reached was not evaluated: only when resuming a run whose last
        checkpoint was not evaluated (or a finished run with fewer --epochs); then, with ``--test-time-aug``, the
        final test-time-augmented evaluation (timed on its own: ``tta_eval_time_s``)."""
        st = self.st
        if st["last_eval"] is None or int(st["last_eval"]["epoch"]) != self.epoch_reached:
            te = time.perf_counter()
            test = evaluate(self.model, self.test_loader, precision=self.cfg.precision, device=self.device,
                            dist=self.dist)
            st["eval_time_s"] = float(st["eval_time_s"]) + time.perf_counter() - te
            st["last_eval"] = {"epoch": self.epoch_reached, **test}
        level = self.cfg.test_time_aug
        if level and (st.get("tta_eval") or {}).get("epoch") != self.epoch_reached:
            te = time.perf_counter()
            test = evaluate(self.model, self.test_loader, precision=self.cfg.precision, device=self.device,
                            dist=self.dist, tta_level=level)
            st["tta_eval"] = {"epoch": self.epoch_reached, "acc": test["acc"], "time_s": time.perf_counter() - te}

    def result(self) -> dict[str, Any]:
        cfg, st, device = self.cfg, self.st, self.device
        st["wall_time_s"] = self.prev_wall + time.perf_counter() - self.wall_start
        tta = {_thr_key(t): st["tta"].get(_thr_key(t)) or {} for t in self.thresholds}
        return {
            "config": cfg.to_dict(),
            "config_hash": config_hash(cfg),
            "model": self.model_name,
            "model_class": type(self.model).__name__,
            "params": sum(p.numel() for p in self.model.parameters()),
            "dataset": getattr(self.train_set, "name", None),
            "train_size": len(self.train_set),
            "test_size": len(self.test_set),
            "epochs_completed": self.epoch_reached,
            "steps": self.global_step,
            "final_test_acc": st["last_eval"]["acc"],
            "final_test_loss": st["last_eval"]["loss"],
            "final_train_loss": (st["last_train"] or {}).get("loss"),
            "final_train_acc": (st["last_train"] or {}).get("acc"),
            "best_test_acc": st["best_acc"],
            "best_epoch": st["best_epoch"],
            "time_to_acc": {k: v.get("train_time_s") for k, v in tta.items()},
            "epochs_to_acc": {k: v.get("epoch") for k, v in tta.items()},
            "wall_time_s": st["wall_time_s"],
            "train_time_s": st["train_time_s"],
            "eval_time_s": st["eval_time_s"],
            "img_per_s": st["images"] / st["train_time_s"] if st["train_time_s"] > 0 else None,
            "lr_peak": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "warmup_steps": self.warmup,
            "total_steps": self.total_steps,
            "precision": "fp32" if not self.amp_on else f"{str(self.amp_dtype).removeprefix('torch.')}"
                                                         + ("+gradscaler" if self.use_scaler else "") + " autocast",
            "device": str(device),
            "device_name": device_name(device),
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "deterministic": cfg.deterministic,
            "resumed_from_epoch": self.resumed_from,
            "stopped_reason": st["stopped_reason"],
            "run_dir": str(self.files.dir),
            "world_size": self.dist.world_size,
            "data_fingerprint": st.get("data_fingerprint"),
            "final_tta_acc": (st.get("tta_eval") or {}).get("acc"),
            "tta_eval_time_s": (st.get("tta_eval") or {}).get("time_s"),
        }
