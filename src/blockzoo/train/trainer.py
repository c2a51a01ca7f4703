"""The training loop behind ``blockzoo train``: :func:`train` and :func:`evaluate`.

One call of :func:`train` runs (or resumes) a whole classification training run and writes into the run directory:

* ``metrics.jsonl``: one JSON object per epoch (keys in :data:`METRIC_KEYS`);
* ``result.json``: the final summary (keys in :data:`RESULT_KEYS`), also returned as a dict;
* ``last.safetensors``: full checkpoint after every epoch (model, optimizer, global step, RNG states, trainer
  state, config), written atomically; ``best.safetensors``: weights of the best-test-accuracy epoch.

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
* Global state touched for the run (``torch.set_num_threads``, deterministic-algorithm flags, cuDNN flags,
  ``CUBLAS_WORKSPACE_CONFIG``, float32 matmul precision) is restored afterwards, also on error.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.errors import BlockzooError

from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import TrainConfig
from .schedules import LRSchedule, warmup_steps_for

__all__ = ["train", "evaluate", "NonFiniteLossError", "build_optimizer", "resolve_device", "amp_settings",
           "METRIC_KEYS", "RESULT_KEYS", "GPU_CHECK_EVERY"]

#: keys of every line of ``metrics.jsonl``: ``step`` is the global step at the end of the epoch, ``lr`` the learning
#: rate of its last step, ``epoch_time_s``/``eval_time_s`` this epoch's training/evaluation time, ``train_time_s`` and
#: ``wall_time_s`` cumulative (over resumes too), ``img_per_s`` training images per second of this epoch;
#: ``test_*`` are ``None`` on epochs without evaluation.
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
               "train_time_s", "eval_time_s", "img_per_s", "wall_time_s")
#: keys of ``result.json``.
RESULT_KEYS = ("config", "model", "model_class", "params", "dataset", "train_size", "test_size", "epochs_completed",
               "steps", "final_test_acc", "final_test_loss", "final_train_loss", "final_train_acc", "best_test_acc",
               "best_epoch", "time_to_acc", "epochs_to_acc", "wall_time_s", "train_time_s", "eval_time_s",
               "img_per_s", "lr_peak", "weight_decay", "warmup_steps", "total_steps", "precision", "device",
               "device_name", "threads", "torch_version", "python_version", "deterministic", "resumed_from_epoch",
               "stopped_reason", "run_dir")
#: on CUDA, how often (in steps) the accumulated losses are checked for NaN/inf.
GPU_CHECK_EVERY = 25


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
        raise ValueError(f"--device {device} requested but CUDA is not available; use --device cpu (or auto)")
    return dev


def amp_settings(precision: str, device: torch.device) -> tuple[bool, torch.dtype | None, bool]:
    """``(autocast enabled, autocast dtype, use GradScaler)`` for a precision name on a device."""
    if precision == "fp32":
        return False, None, False
    if precision == "amp":
        precision = "fp16" if device.type == "cuda" else "bf16"
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16; use --precision amp (fp16 + GradScaler) or fp32")
        return True, torch.bfloat16, False
    if precision == "fp16":
        return True, torch.float16, True
    raise ValueError(f"unknown precision {precision!r}; expected bf16, fp32, fp16 or amp")


def _autocast(device: torch.device, enabled: bool, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over two parameter groups: with weight decay (weights of >= 2 dims) and without
    (biases, norm scales/shifts and other 1-D/0-D parameters), unless ``cfg.wd_norm_bias`` puts all in the first.
    Expects a resolved config (``lr``/``weight_decay`` not None)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not cfg.wd_norm_bias and (p.ndim <= 1 or name.endswith(".bias")):
            no_decay.append(p)
        else:
            decay.append(p)
    wd = float(cfg.weight_decay or 0.0)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    lr = float(cfg.lr)  # type: ignore[arg-type]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected sgd or adamw")


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _thr_key(t: float) -> str:
    return f"{float(t):.2f}" if round(float(t), 2) == float(t) else repr(float(t))


# ---------------------------------------------------------------------------------------------------------- evaluate
@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, *, precision: str = "fp32", device: str | torch.device = "cpu",
             max_batches: int | None = None) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy of ``model`` over ``loader`` (batches of
    ``(x, y)`` already on ``device``). Runs in eval mode (restored afterwards) with one host sync at the end.
    Returns ``{"loss", "acc", "n"}``."""
    device = torch.device(device)
    enabled, dtype, _ = amp_settings(precision, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float32)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    try:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            with _autocast(device, enabled, dtype):
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += int(y.shape[0])
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate(): the loader yielded no batches")
    return {"loss": float(loss_sum.item()) / n, "acc": float(correct.item()) / n, "n": n}


# ---------------------------------------------------------------------------------------------------------- progress
class _Progress:
    """Rich progress bar over all steps of the run (loss, acc, images/s, ETA) or a no-op."""

    def __init__(self, enabled: bool, console: Any, total: int, completed: int) -> None:
        self.enabled = enabled
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
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


def _create_model(cfg: TrainConfig, train_set: Any) -> nn.Module:
    import blockzoo
    create = getattr(blockzoo, "create_model", None)
    if create is None:
        from blockzoo.registry import create_model as create
    return create(cfg.model, num_classes=int(train_set.num_classes), in_chans=int(train_set.in_chans),
                  img_size=tuple(train_set.image_size), **{**cfg.model_kwargs, **cfg.slots})


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
    _atomic_write_text(path, "".join(line + "\n" for line in lines))


_RESUME_IGNORED = {"resume", "progress", "out_dir", "threads", "device", "max_train_time_s", "checkpoint",
                   "data_dir", "tta_thresholds", "eval_every"}


def train(cfg: TrainConfig, model: nn.Module | None = None, train_set: Any = None, test_set: Any = None, *,
          console: Any = None, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or, with ``cfg.resume``, continue) a classifier and return the result dict (also in result.json).

    ``model``: a ready ``nn.Module`` (trained in place), or ``None`` to build ``cfg.model`` with ``cfg.slots`` via
    ``blockzoo.create_model`` (after seeding). ``train_set``/``test_set``: :class:`blockzoo.data.Dataset` objects, or
    ``None`` to load ``cfg.data`` (``cfg.subset`` applies only then). ``console``: a ``rich.console.Console`` for the
    progress bar (default: stderr). ``on_epoch_end(metrics)`` is called after each epoch's metrics line and checkpoint
    are written (raising in it aborts the run, leaving a resumable checkpoint).

    Raises :class:`NonFiniteLossError` on NaN/inf loss and :class:`~blockzoo.train.CheckpointError` if a checkpoint
    to resume from is corrupt or does not match.
    """
    from blockzoo.data import Loader, load_dataset
    from blockzoo.profile.core import device_name

    wall_start = time.perf_counter()
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    amp_on, amp_dtype, use_scaler = amp_settings(cfg.precision, device)
    run_dir = Path(cfg.out_dir)  # type: ignore[arg-type]
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"
    metrics_path, result_path = run_dir / "metrics.jsonl", run_dir / "result.json"

    with _global_settings(cfg, device):
        _seed_everything(cfg.seed)
        if train_set is None:
            train_set = load_dataset(cfg.data, "train", data_dir=cfg.data_dir, subset=cfg.subset, seed=cfg.seed)
        if test_set is None:
            test_set = load_dataset(cfg.data, "test", data_dir=cfg.data_dir)
        if model is None:
            model = _create_model(cfg, train_set)
            model_name = cfg.model
        else:
            model_name = str(getattr(model, "model_name", None) or type(model).__name__)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        optimizer = build_optimizer(model, cfg)
        scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        train_loader = Loader(train_set, cfg.batch_size, train=True, augment=cfg.augment, seed=cfg.seed,
                              device=device, channels_last=cfg.channels_last)
        test_loader = Loader(test_set, int(cfg.eval_batch_size), train=False, seed=cfg.seed,  # type: ignore[arg-type]
                             device=device, channels_last=cfg.channels_last)
        steps_per_epoch = len(train_loader)
        if steps_per_epoch < 1:
            raise ValueError(f"the training set ({len(train_set)} images) gives no full batch of {cfg.batch_size}; "
                             f"lower --batch-size")
        total_steps = cfg.epochs * steps_per_epoch
        warmup = warmup_steps_for(cfg.warmup_epochs, steps_per_epoch, total_steps)
        schedule = LRSchedule(float(cfg.lr), total_steps, warmup, cfg.schedule)  # type: ignore[arg-type]
        thresholds = sorted({float(t) for t in cfg.tta_thresholds})

        # ---------------------------------------------------------------- trainer state (checkpointed in `extra`)
        st: dict[str, Any] = {"train_time_s": 0.0, "eval_time_s": 0.0, "wall_time_s": 0.0, "images": 0,
                              "best_acc": None, "best_epoch": None, "tta": {}, "last_eval": None,
                              "last_train": None, "stopped_reason": None}
        start_epoch, global_step, resumed_from = 0, 0, None
        run_dir.mkdir(parents=True, exist_ok=True)  # only now: a bad --data / --model leaves no empty run dir
        if cfg.resume and last_path.exists():
            meta = load_checkpoint(last_path, model=model, optimizer=optimizer, scaler=scaler, restore_rng=True,
                                   map_location="cpu")
            saved_cfg = meta.get("config") or {}
            diff = sorted(k for k, v in cfg.to_dict().items()
                          if k not in _RESUME_IGNORED and k in saved_cfg and saved_cfg[k] != v)
            if diff:
                warnings.warn(f"resuming {str(last_path)!r} with changed settings {diff}; the run will not match an "
                              f"uninterrupted one", stacklevel=2)
            start_epoch, global_step, resumed_from = int(meta["epoch"]), int(meta["step"]), int(meta["epoch"])
            st.update(meta["extra"].get("trainer", {}))
        else:
            for stale in (last_path, best_path, result_path):  # a fresh run replaces whatever was in the run dir
                stale.unlink(missing_ok=True)
        _rewrite_metrics(metrics_path, start_epoch)
        prev_wall = float(st["wall_time_s"])
        ckpt_epoch: int | None = resumed_from  # epoch of the checkpoint on disk that belongs to this run
        epoch_reached = start_epoch
        # a run stopped by its time budget is finished: resuming it only re-reports
        first_epoch = cfg.epochs + 1 if st.get("stopped_reason") else start_epoch + 1

        params = sum(p.numel() for p in model.parameters())
        loss_buf = torch.zeros(steps_per_epoch, device=device, dtype=torch.float32)
        correct_buf = torch.zeros(steps_per_epoch, device=device, dtype=torch.int64)
        check_every = 1 if device.type == "cpu" else GPU_CHECK_EVERY
        bar = _Progress(cfg.progress, console, total_steps, min(global_step, total_steps))
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                epoch_reached = epoch
                if hasattr(train_loader, "set_epoch"):
                    train_loader.set_epoch(epoch - 1)
                model.train()
                loss_buf.zero_()
                correct_buf.zero_()
                n_images, n_steps, checked = 0, 0, 0
                lr = schedule(global_step)
                budget_left = (None if cfg.max_train_time_s is None
                               else cfg.max_train_time_s - float(st["train_time_s"]))
                t0 = last_ui = time.perf_counter()
                for i, (x, y) in enumerate(train_loader):
                    if i >= steps_per_epoch:
                        break
                    lr = schedule(global_step)
                    for g in optimizer.param_groups:
                        g["lr"] = lr
                    with _autocast(device, amp_on, amp_dtype):
                        out = model(x)
                        loss = criterion(out.float(), y)
                    loss_buf[i] = loss.detach()
                    if check_every == 1:
                        if not math.isfinite(loss_buf[i].item()):
                            raise _nonfinite_error(loss=loss_buf[i].item(), epoch=epoch, step_in_epoch=i + 1,
                                                   global_step=global_step + 1, lr=lr, cfg=cfg,
                                                   ckpt=last_path if ckpt_epoch is not None else None,
                                                   ckpt_epoch=ckpt_epoch)
                    elif (i + 1) % check_every == 0:
                        _check_buffer(loss_buf, checked, i + 1, epoch, global_step - i, schedule, cfg,
                                      last_path if ckpt_epoch is not None else None, ckpt_epoch)
                        checked = i + 1
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        if cfg.clip_grad_norm is not None:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        if cfg.clip_grad_norm is not None:
                            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                        optimizer.step()
                    correct_buf[i] = (out.detach().argmax(1) == y).sum()
                    n_images += int(y.shape[0])
                    n_steps = i + 1
                    global_step += 1
                    now = time.perf_counter()
                    if bar.enabled:
                        fields: dict[str, str] = {}
                        if now - last_ui > 0.5 or n_steps == steps_per_epoch:
                            last_ui = now
                            fields = {"loss": f"{loss_buf[:n_steps].mean().item():.4f}",
                                      "acc": f"{correct_buf[:n_steps].sum().item() / n_images:.4f}",
                                      "ips": f"{n_images / max(now - t0, 1e-9):.0f}"}
                        bar.step(f"epoch {epoch}/{cfg.epochs}", **fields)
                    if budget_left is not None and now - t0 >= budget_left:
                        st["stopped_reason"] = "max_train_time_s"
                        break
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                epoch_time = time.perf_counter() - t0
                if n_steps == 0:
                    raise RuntimeError("the training loader yielded no batches")
                # ------------------------------------------------------------------------------ end of epoch
                _check_buffer(loss_buf, checked, n_steps, epoch, global_step - n_steps, schedule, cfg,
                              last_path if ckpt_epoch is not None else None, ckpt_epoch)
                st["train_time_s"] = float(st["train_time_s"]) + epoch_time
                st["images"] = int(st["images"]) + n_images
                train_loss = float(loss_buf[:n_steps].sum().item()) / n_steps
                train_acc = float(correct_buf[:n_steps].sum().item()) / n_images
                st["last_train"] = {"loss": train_loss, "acc": train_acc}
                last_epoch = epoch == cfg.epochs or st["stopped_reason"] is not None
                test: dict[str, float] | None = None
                eval_time = 0.0
                if epoch % cfg.eval_every == 0 or last_epoch:
                    te = time.perf_counter()
                    test = evaluate(model, test_loader, precision=cfg.precision, device=device)
                    eval_time = time.perf_counter() - te
                    st["eval_time_s"] = float(st["eval_time_s"]) + eval_time
                    st["last_eval"] = {"epoch": epoch, **test}
                    if not math.isfinite(test["loss"]):
                        raise _nonfinite_error(loss=test["loss"], epoch=epoch, step_in_epoch=n_steps,
                                               global_step=global_step, lr=lr, cfg=cfg,
                                               ckpt=last_path if ckpt_epoch is not None else None,
                                               ckpt_epoch=ckpt_epoch, what="test loss")
                    if st["best_acc"] is None or test["acc"] > st["best_acc"]:
                        st["best_acc"], st["best_epoch"] = test["acc"], epoch
                        if cfg.checkpoint:
                            save_weights(best_path, model, metadata={"epoch": epoch, "test_acc": test["acc"],
                                                                     "model": model_name})
                    for t in thresholds:
                        if test["acc"] >= t and _thr_key(t) not in st["tta"]:
                            st["tta"][_thr_key(t)] = {"train_time_s": st["train_time_s"], "epoch": epoch}
                st["wall_time_s"] = prev_wall + time.perf_counter() - wall_start
                metrics = {
                    "epoch": epoch, "step": global_step, "train_loss": train_loss, "train_acc": train_acc,
                    "test_loss": test["loss"] if test else None, "test_acc": test["acc"] if test else None,
                    "lr": lr, "epoch_time_s": epoch_time, "train_time_s": st["train_time_s"],
                    "eval_time_s": eval_time, "img_per_s": n_images / epoch_time if epoch_time > 0 else None,
                    "wall_time_s": st["wall_time_s"],
                }
                with open(metrics_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(metrics, default=_json_default) + "\n")
                if cfg.checkpoint:
                    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
                    if bad:
                        raise _nonfinite_error(loss=float("nan"), epoch=epoch, step_in_epoch=n_steps,
                                               global_step=global_step, lr=lr, cfg=cfg,
                                               ckpt=last_path if ckpt_epoch is not None else None,
                                               ckpt_epoch=ckpt_epoch, what=f"parameters ({', '.join(bad[:3])})")
                    save_checkpoint(last_path, model=model, optimizer=optimizer, step=global_step, epoch=epoch,
                                    config=cfg.to_dict(), best_metric=st["best_acc"], scaler=scaler,
                                    extra={"trainer": st})
                    ckpt_epoch = epoch
                if bar.enabled:
                    msg = (f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                           + (f"  test loss {test['loss']:.4f} acc {test['acc']:.4f}" if test else "")
                           + f"  lr {lr:.3g}  {metrics['img_per_s'] or 0:.0f} img/s  {epoch_time:.1f}s")
                    bar.log(msg)
                if on_epoch_end is not None:
                    on_epoch_end(dict(metrics))
                if st["stopped_reason"] is not None:
                    break
        finally:
            bar.close()

        if st["last_eval"] is None or int(st["last_eval"]["epoch"]) != epoch_reached:
            # only when resuming a run whose last checkpoint was not evaluated (or a finished run with fewer --epochs)
            te = time.perf_counter()
            test = evaluate(model, test_loader, precision=cfg.precision, device=device)
            st["eval_time_s"] = float(st["eval_time_s"]) + time.perf_counter() - te
            st["last_eval"] = {"epoch": epoch_reached, **test}
        st["wall_time_s"] = prev_wall + time.perf_counter() - wall_start
        result: dict[str, Any] = {
            "config": cfg.to_dict(),
            "model": model_name,
            "model_class": type(model).__name__,
            "params": params,
            "dataset": getattr(train_set, "name", None),
            "train_size": len(train_set),
            "test_size": len(test_set),
            "epochs_completed": epoch_reached,
            "steps": global_step,
            "final_test_acc": st["last_eval"]["acc"],
            "final_test_loss": st["last_eval"]["loss"],
            "final_train_loss": (st["last_train"] or {}).get("loss"),
            "final_train_acc": (st["last_train"] or {}).get("acc"),
            "best_test_acc": st["best_acc"],
            "best_epoch": st["best_epoch"],
            "time_to_acc": {_thr_key(t): (st["tta"].get(_thr_key(t)) or {}).get("train_time_s") for t in thresholds},
            "epochs_to_acc": {_thr_key(t): (st["tta"].get(_thr_key(t)) or {}).get("epoch") for t in thresholds},
            "wall_time_s": st["wall_time_s"],
            "train_time_s": st["train_time_s"],
            "eval_time_s": st["eval_time_s"],
            "img_per_s": st["images"] / st["train_time_s"] if st["train_time_s"] > 0 else None,
            "lr_peak": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "warmup_steps": warmup,
            "total_steps": total_steps,
            "precision": "fp32" if not amp_on else f"{str(amp_dtype).removeprefix('torch.')}"
                                                    + ("+gradscaler" if use_scaler else "") + " autocast",
            "device": str(device),
            "device_name": device_name(device),
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "deterministic": cfg.deterministic,
            "resumed_from_epoch": resumed_from,
            "stopped_reason": st["stopped_reason"],
            "run_dir": str(run_dir),
        }
    _atomic_write_text(result_path, json.dumps(result, indent=2, default=_json_default) + "\n")
    return result


def _check_buffer(loss_buf: torch.Tensor, lo: int, hi: int, epoch: int, first_global_step: int, schedule: LRSchedule,
                  cfg: TrainConfig, ckpt: Path | None, ckpt_epoch: int | None) -> None:
    """Raise NonFiniteLossError if any of ``loss_buf[lo:hi]`` is NaN/inf (one host sync)."""
    if hi <= lo:
        return
    seg = loss_buf[lo:hi]
    if bool(torch.isfinite(seg).all().item()):
        return
    j = int((~torch.isfinite(seg)).nonzero()[0].item()) + lo  # first bad step (0-based, in epoch)
    g = first_global_step + j
    raise _nonfinite_error(loss=float(loss_buf[j].item()), epoch=epoch, step_in_epoch=j + 1, global_step=g + 1,
                           lr=schedule(g), cfg=cfg, ckpt=ckpt, ckpt_epoch=ckpt_epoch)
