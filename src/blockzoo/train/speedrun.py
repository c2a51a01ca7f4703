"""A fast training recipe for small images on a small CPU: :func:`speedrun`, after airbench (Jordan, "94% on
CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498; KellerJordan/cifar10-airbench, ``airbench94.py``).

What it does (airbench94's method, defaults re-tuned for 28 px Fashion-MNIST on 2 CPU cores):

* network: :class:`blockzoo.models.speednet.SpeedNet` (wide, shallow, max-pool head, scaled logits); its first conv
  is a frozen patch-whitening layer set from the training images (:func:`~blockzoo.models.speednet.init_whitening`,
  on the first ``whiten_samples`` training images, counted as training time); its bias trains for the first
  ``whiten_bias_epochs`` epochs only;
* optimisation: SGD with Nesterov momentum on the *summed* label-smoothed cross-entropy, with airbench's
  parametrisation: ``lr`` and ``weight_decay`` are given "per 1024 examples" and divided by
  ``1024 * (1 + 1 / (1 - momentum))``; norm-layer parameters get ``bias_scaler`` x the learning rate (same decay);
  per-step schedule linear from 0.2x to 1x over the first ``warmup`` fraction of the steps, then linear to 0;
* weight averaging: lookahead every 5 steps towards an EMA of the weights with decay ``0.95**5 * (step / T)**3``
  (buffers too); at the end the EMA weights are copied into the network;
* data: :class:`blockzoo.data.Loader` batches (random translate by up to ``translate`` px with zero padding +
  horizontal flip), bf16 autocast where the CPU computes bf16 in hardware (``precision="auto"``; fp32 where bf16
  would be emulated, which is slower) and channels-last;
* test-time augmentation (``tta``): logits averaged over the image and its mirror (weight 1/2) and over the mirror
  pairs of the image translated by one pixel diagonally in both directions (1/4 each), as airbench's ``tta_level=2``
  (:func:`predict_tta`).

Timing (honest time-to-accuracy): ``train_time_s`` counts the whitening init, data augmentation and every
forward/backward/optimizer/lookahead step, nothing else; the per-epoch test evaluations (plain, no TTA) are timed
separately (``eval_time_s``) and never influence the run (no early stopping, no model selection: the result is the
last model); the final TTA evaluation is timed on its own (``tta_eval_time_s``). ``budget`` is a hard cap on
training time: when reached mid-run, training stops, the EMA weights are installed and the run is evaluated as is.
A held-out part of the training set (``holdout``) can be used for tuning instead of the test set.
"""
from __future__ import annotations

import contextlib
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["speedrun", "predict_tta", "evaluate_logits", "Lookahead", "airbench_schedule", "black_pixel",
           "SPEEDRUN_DEFAULTS", "THRESHOLDS"]

THRESHOLDS = (0.90, 0.92, 0.93, 0.94)

#: the defaults of :func:`speedrun` (the fast Fashion-MNIST recipe).
SPEEDRUN_DEFAULTS: dict[str, Any] = dict(
    model="speednet", model_kwargs=None, epochs=5, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153,
    bias_scaler=64.0, label_smoothing=0.2, warmup=0.2, whiten_bias_epochs=3, whiten_samples=5000,
    lookahead=True, translate=2, flip=True, precision="auto", channels_last=True, eval_batch_size=2000,
)


# ------------------------------------------------------------------------------------------------------ pieces
def airbench_schedule(total_steps: int, warmup: float = 0.2, start: float = 0.2) -> np.ndarray:
    """Per-step lr multipliers (length ``total_steps + 1``): linear from ``start`` to 1 over the first ``warmup``
    fraction of the steps, then linear down to 0 at ``total_steps`` (airbench94's triangular schedule)."""
    return np.interp(np.arange(total_steps + 1), [0, int(warmup * total_steps), total_steps], [start, 1.0, 0.0])


class Lookahead:
    """airbench's lookahead: an EMA copy of the model's floating-point state (parameters and buffers); every call to
    :meth:`update` moves the EMA towards the current weights (``ema = decay * ema + (1 - decay) * w``) and then
    copies the EMA back into the model."""

    def __init__(self, model: nn.Module) -> None:
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    def step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """airbench's cadence: after every 5th optimizer step (1-based ``step``), :meth:`update` with decay
        ``0.95^5 * (step / total_steps)^3``."""
        if step % 5 == 0:
            self.update(model, 0.95 ** 5 * (step / total_steps) ** 3)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.ema[k].lerp_(v, 1.0 - decay)
                v.copy_(self.ema[k])


def black_pixel(ds: Any) -> torch.Tensor:
    """A black pixel of dataset ``ds`` after normalisation, per channel (the fill of test-time translations)."""
    return -torch.tensor(ds.mean) / torch.tensor(ds.std)


def _translate(x: torch.Tensor, dy: int, dx: int, pad_value: float | torch.Tensor) -> torch.Tensor:
    """Shift the content of an N x C x H x W batch by (dy, dx) pixels (down/right positive), filling with
    ``pad_value`` (a number, or one value per channel as a tensor broadcastable to 1 x C x 1 x 1)."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    if isinstance(pad_value, torch.Tensor):
        pv = pad_value.to(x.dtype).reshape(1, -1, 1, 1)
        xp = F.pad(x - pv, (p, p, p, p)) + pv
    else:
        xp = F.pad(x, (p, p, p, p), value=float(pad_value))
    return xp[..., p - dy: p - dy + h, p - dx: p - dx + w]


def predict_tta(model: nn.Module, x: torch.Tensor, level: int = 2,
                pad_value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Test-time-augmented logits (airbench's ``infer``): level 0 = ``model(x)``; level 1 = mean of ``model(x)``
    and ``model(flip(x))``; level 2 = ``0.5 * level1(x) + 0.25 * level1(x shifted by (+1, +1)) + 0.25 * level1(x
    shifted by (-1, -1))``, where shifted images are filled with ``pad_value`` (the normalised background)."""
    def mirror(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(z) + 0.5 * model(z.flip(-1))

    if level == 0:
        return model(x)
    if level == 1:
        return mirror(x)
    if level != 2:
        raise ValueError(f"TTA level must be 0, 1 or 2, got {level}")
    shifted = [mirror(_translate(x, s, s, pad_value)) for s in (1, -1)]
    return 0.5 * mirror(x) + 0.25 * (shifted[0] + shifted[1])


@torch.no_grad()
def evaluate_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2000, tta_level: int = 0,
                    pad_value: float | torch.Tensor = 0.0,
                    autocast_dtype: torch.dtype | None = torch.bfloat16) -> torch.Tensor:
    """Logits (float32, N x K) of ``model`` in eval mode over a normalised batch tensor ``x``, in chunks."""
    was = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i: i + batch_size]
            ctx = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None and x.device.type == "cpu"
                   else contextlib.nullcontext())
            with ctx:
                outs.append(predict_tta(model, xb, tta_level, pad_value).float())
    finally:
        model.train(was)
    return torch.cat(outs)


def _normalize_all(ds: Any, channels_last: bool) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    x = (ds.images.float() / 255.0 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --------------------------------------------------------------------------------------------------- the recipe
def speedrun(seed: int = 0, data: str = "fashion-mnist", budget: float | None = 300.0, tta: bool = True, *,
             epochs: int | float | None = None, batch_size: int | None = None, lr: float | None = None,
             momentum: float | None = None, weight_decay: float | None = None, bias_scaler: float | None = None,
             label_smoothing: float | None = None, warmup: float | None = None,
             whiten_bias_epochs: float | None = None, whiten_samples: int | None = None,
             lookahead: bool | None = None, translate: int | None = None, flip: bool | None = None,
             model: str | None = None, model_kwargs: dict[str, Any] | None = None, precision: str | None = None,
             channels_last: bool | None = None, eval_batch_size: int | None = None, eval_every: int = 1,
             holdout: int = 0, subset: int | None = None, data_dir: str | None = None,
             data_kwargs: dict[str, Any] | None = None, threads: int | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train with the fast recipe (module docstring) and return a JSON-able result dict.

    ``None`` arguments take :data:`SPEEDRUN_DEFAULTS`. ``epochs`` may be fractional (the schedule covers
    ``round(epochs * steps_per_epoch)`` steps). ``budget``: hard cap on training seconds (``None``: none).
    ``holdout``: keep this many training images (class-stratified, chosen by ``seed``) out of training and report
    accuracy on them every epoch (``val_acc``) -- use that, not the test set, to tune. ``subset``: train on a
    stratified subset. ``eval_every``: plain test evaluation every N epochs (always after the last one).

    Result keys: ``curve`` (per evaluated epoch: ``epoch``, ``train_time_s`` cumulative, ``test_acc``,
    ``val_acc``, ``train_loss``, ``lr``), ``time_to_acc`` / ``epochs_to_acc`` (first evaluation reaching each of
    :data:`THRESHOLDS`, plain test accuracy; the final TTA accuracy counts at the final training time),
    ``final_test_acc`` (plain), ``final_tta_acc``, ``train_time_s``, ``eval_time_s``, ``tta_eval_time_s``,
    ``setup_time_s`` (data loading, untimed otherwise), ``precision`` (the one used), ``train_cpu_s`` (process CPU
    time during training: on a machine shared with other jobs, ``train_cpu_s / threads`` is closer to the idle-machine
    wall time), ``img_per_s``, ``macs_per_image`` (forward), ``gflops`` (achieved, ``6 * MACs * img/s``), ``params``,
    ``config`` and machine info.
    """
    d = SPEEDRUN_DEFAULTS
    pick = lambda v, k: d[k] if v is None else v  # noqa: E731
    cfg = dict(
        seed=seed, data=data, budget=budget, tta=tta, epochs=pick(epochs, "epochs"),
        batch_size=int(pick(batch_size, "batch_size")), lr=float(pick(lr, "lr")),
        momentum=float(pick(momentum, "momentum")),
        weight_decay=float(pick(weight_decay, "weight_decay")), bias_scaler=float(pick(bias_scaler, "bias_scaler")),
        label_smoothing=float(pick(label_smoothing, "label_smoothing")), warmup=float(pick(warmup, "warmup")),
        whiten_bias_epochs=float(pick(whiten_bias_epochs, "whiten_bias_epochs")),
        whiten_samples=int(pick(whiten_samples, "whiten_samples")), lookahead=bool(pick(lookahead, "lookahead")),
        translate=int(pick(translate, "translate")), flip=bool(pick(flip, "flip")), model=pick(model, "model"),
        model_kwargs=dict(model_kwargs or d["model_kwargs"] or {}), precision=pick(precision, "precision"),
        channels_last=bool(pick(channels_last, "channels_last")),
        eval_batch_size=int(pick(eval_batch_size, "eval_batch_size")), eval_every=int(eval_every),
        holdout=int(holdout),
        subset=subset, threads=threads,
    )
    if cfg["precision"] not in ("auto", "bf16", "fp32"):
        raise ValueError(f"speedrun precision must be 'auto', 'bf16' or 'fp32', got {cfg['precision']!r}")
    if not float(cfg["epochs"]) > 0:
        raise ValueError(f"epochs must be > 0, got {cfg['epochs']}")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be a positive number of seconds or None, got {budget}")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        run = _SpeedRun(cfg, data_dir=data_dir, data_kwargs=data_kwargs, say=log or (lambda s: None))  # untimed
        run.train()                                                                                    # timed
        run.final_tta()
        return run.result()
    finally:
        torch.set_num_threads(saved_threads)


class _SpeedRun:
    """One speed run between :func:`speedrun`'s steps. Building it is the untimed setup: data (train / held-out /
    test tensors), the network, its MAC count, the optimizer and the schedule."""

    def __init__(self, cfg: dict[str, Any], *, data_dir: str | None, data_kwargs: dict[str, Any] | None,
                 say: Callable[[str], None]) -> None:
        from blockzoo import create_model

        self.cfg, self.say = cfg, say
        t_setup = time.perf_counter()
        seed = cfg["seed"]
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        self._load_data(data_dir, data_kwargs)
        h, w = self.train_set.image_size
        self.net = create_model(cfg["model"], num_classes=self.train_set.num_classes,
                                in_chans=self.train_set.in_chans, img_size=(h, w), **cfg["model_kwargs"])
        if cfg["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.params = sum(p.numel() for p in self.net.parameters())
        self.macs = _forward_macs(self.net, (self.train_set.in_chans, h, w))
        self._build_optimizer()
        self.setup_time = time.perf_counter() - t_setup
        from blockzoo.env import native_bf16
        bf16 = cfg["precision"] == "bf16" or (cfg["precision"] == "auto" and native_bf16())
        self.precision = "bf16" if bf16 else "fp32"
        self.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        self.train_time = self.eval_time = self.cpu_train = self.tta_time = 0.0
        self.curve: list[dict[str, Any]] = []
        self.step = self.images_seen = 0
        self.stopped: str | None = None
        self.tta_acc = self.tta_val = None

    # ------------------------------------------------------------------------------------------ setup (untimed)
    def _load_data(self, data_dir: str | None, data_kwargs: dict[str, Any] | None) -> None:
        from blockzoo.data import Loader, load_dataset, take_subset
        from blockzoo.data.core import Dataset
        from blockzoo.data.datasets import subset_indices

        cfg, seed, holdout = self.cfg, self.cfg["seed"], self.cfg["holdout"]
        kw = dict(data_kwargs or {})
        train_set = load_dataset(cfg["data"], "train", data_dir=data_dir, **kw)
        test_set = load_dataset(cfg["data"], "test", data_dir=data_dir, **kw)
        val_set = None
        if holdout:
            if not 0 < holdout < len(train_set):
                raise ValueError(f"holdout must be in (0, {len(train_set)}), got {holdout}")
            val_idx = subset_indices(train_set.labels, holdout, seed=seed + 10_000)
            keep = torch.ones(len(train_set), dtype=torch.bool)
            keep[val_idx] = False

            def part(mask_or_idx: torch.Tensor, split: str) -> Dataset:
                return Dataset(name=train_set.name, images=train_set.images[mask_or_idx].contiguous(),
                               labels=train_set.labels[mask_or_idx].contiguous(), classes=list(train_set.classes),
                               mean=train_set.mean, std=train_set.std, flip_ok=train_set.flip_ok, split=split)
            val_set, train_set = part(val_idx, "val"), part(keep, "train")
        if cfg["subset"] is not None:
            train_set = take_subset(train_set, int(cfg["subset"]), seed)
        self.train_set, self.test_set, self.val_set = train_set, test_set, val_set
        self.batch_size = min(cfg["batch_size"], len(train_set))
        cl = cfg["channels_last"]
        self.loader = Loader(train_set, self.batch_size, train=True, crop_padding=cfg["translate"], flip=cfg["flip"],
                             seed=seed, channels_last=cl)
        self.x_test, self.y_test = _normalize_all(test_set, cl), test_set.labels
        self.x_val = _normalize_all(val_set, cl) if val_set is not None else None
        self.pad_value = black_pixel(train_set)

    def _build_optimizer(self) -> None:
        """airbench's parametrisation: lr and weight decay per 1024 examples; norm parameters get bias_scaler x lr."""
        cfg, net = self.cfg, self.net
        self.steps_per_epoch = len(self.loader)
        self.total_steps = max(1, int(round(float(cfg["epochs"]) * self.steps_per_epoch)))
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.sched = airbench_schedule(self.total_steps, cfg["warmup"])
        kilostep = 1024 * (1 + 1 / (1 - cfg["momentum"]))
        lr0 = cfg["lr"] / kilostep
        wd0 = cfg["weight_decay"] * self.batch_size / kilostep
        lr_b = lr0 * cfg["bias_scaler"]
        norm_types = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
        norm_ids = {id(p) for m in net.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
        norm_params = [p for p in net.parameters() if p.requires_grad and id(p) in norm_ids]
        other_params = [p for p in net.parameters() if p.requires_grad and id(p) not in norm_ids]
        groups = [dict(params=norm_params, lr=lr_b, weight_decay=wd0 / lr_b, base_lr=lr_b),
                  dict(params=other_params, lr=lr0, weight_decay=wd0 / lr0, base_lr=lr0)]
        self.opt = torch.optim.SGD([g for g in groups if g["params"]], momentum=cfg["momentum"], nesterov=True)

    # ------------------------------------------------------------------------------------------ training (timed)
    def train(self) -> None:
        """Whitening init and lookahead set-up (timed as training), then the epochs, each evaluated when due."""
        from blockzoo.data import take_subset

        cfg, net = self.cfg, self.net
        self.whiten = getattr(net, "whiten", None)
        cpu0, t0 = time.process_time(), time.perf_counter()
        if self.whiten is not None:
            from blockzoo.models.speednet import init_whitening
            n = cfg["whiten_samples"]
            xw = _normalize_all(take_subset(self.train_set, min(n, len(self.train_set)), cfg["seed"])
                                if n < len(self.train_set) else self.train_set, False)
            init_whitening(self.whiten, xw)
        self.lookahead = Lookahead(net) if cfg["lookahead"] else None
        self.train_time += time.perf_counter() - t0
        self.cpu_train += time.process_time() - cpu0
        net.train()
        for epoch in range(1, self.n_epochs + 1):
            train_loss, last = self._train_epoch(epoch)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}; lower lr (now {cfg['lr']})")
            if epoch % cfg["eval_every"] == 0 or last:
                self._evaluate(epoch, train_loss)
            if last:
                break

    def _train_epoch(self, epoch: int) -> tuple[float, bool]:
        """One pass (up to the step count / budget); returns ``(mean train loss, whether it was the last)``."""
        cfg, net, opt, la = self.cfg, self.net, self.opt, self.lookahead
        t0, cpu0 = time.perf_counter(), time.process_time()
        if self.whiten is not None and self.whiten.bias is not None:
            self.whiten.bias.requires_grad_(epoch <= cfg["whiten_bias_epochs"])
        loss_sum = torch.zeros(())
        n_ep = 0
        for x, y in self.loader:
            if self.step >= self.total_steps:
                break
            ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast_dtype is not None
                   else contextlib.nullcontext())
            with ctx:
                out = net(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=cfg["label_smoothing"], reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            mult = float(self.sched[self.step])
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * mult
            opt.step()
            self.step += 1
            loss_sum += loss.detach()
            n_ep += y.shape[0]
            if la is not None:
                la.step(net, self.step, self.total_steps)
            if cfg["budget"] is not None and self.train_time + time.perf_counter() - t0 >= cfg["budget"]:
                self.stopped = "budget"
                break
        last = self.step >= self.total_steps or self.stopped is not None
        if last and la is not None:
            la.update(net, 1.0)        # install the averaged weights
        self.train_time += time.perf_counter() - t0
        self.cpu_train += time.process_time() - cpu0
        self.images_seen += n_ep
        return float(loss_sum) / max(n_ep, 1), last

    def _accuracy(self, x: torch.Tensor, y: torch.Tensor, tta_level: int = 0) -> float:
        logits = evaluate_logits(self.net, x, batch_size=self.cfg["eval_batch_size"], tta_level=tta_level,
                                 pad_value=self.pad_value, autocast_dtype=self.autocast_dtype)
        return float((logits.argmax(1) == y).float().mean())

    def _evaluate(self, epoch: int, train_loss: float) -> None:
        """Plain test (and held-out) accuracy, timed apart from training; one point of the curve."""
        te = time.perf_counter()
        acc = self._accuracy(self.x_test, self.y_test)
        val_acc = self._accuracy(self.x_val, self.val_set.labels) if self.x_val is not None else None
        self.eval_time += time.perf_counter() - te
        self.curve.append(dict(epoch=epoch, step=self.step, train_time_s=self.train_time, test_acc=acc,
                               val_acc=val_acc, train_loss=train_loss,
                               lr_mult=float(self.sched[min(self.step, self.total_steps)])))
        self.say(f"epoch {epoch}/{self.n_epochs} step {self.step}/{self.total_steps} train {self.train_time:6.1f}s "
                 f"loss {train_loss:.4f} test {acc:.4f}" + (f" val {val_acc:.4f}" if val_acc is not None else ""))

    # ------------------------------------------------------------------------------------------------- result
    def final_tta(self) -> None:
        """The final test-time-augmented accuracy (timed on its own), if asked for."""
        if not self.cfg["tta"]:
            return
        te = time.perf_counter()
        self.tta_acc = self._accuracy(self.x_test, self.y_test, tta_level=2)
        self.tta_time = time.perf_counter() - te
        if self.x_val is not None:
            self.tta_val = self._accuracy(self.x_val, self.val_set.labels, tta_level=2)
        self.say(f"final TTA test {self.tta_acc:.4f} ({self.tta_time:.1f}s)"
                 + (f" val {self.tta_val:.4f}" if self.tta_val else ""))

    def result(self) -> dict[str, Any]:
        from blockzoo.env import device_name

        curve, cfg = self.curve, self.cfg
        time_to, epochs_to = {}, {}
        for t in THRESHOLDS:
            hit = next((c for c in curve if c["test_acc"] >= t), None)
            if hit is None and self.tta_acc is not None and self.tta_acc >= t:
                hit = dict(curve[-1], epoch=f"{curve[-1]['epoch']}+tta")
            time_to[f"{t:.2f}"] = None if hit is None else hit["train_time_s"]
            epochs_to[f"{t:.2f}"] = None if hit is None else hit["epoch"]
        ips = self.images_seen / self.train_time if self.train_time > 0 else None
        return dict(
            recipe="speedrun", config=cfg, precision=self.precision, model=cfg["model"], params=self.params,
            macs_per_image=self.macs,
            dataset=self.train_set.name, train_size=len(self.train_set), test_size=len(self.test_set),
            holdout=cfg["holdout"], steps=self.step, total_steps=self.total_steps,
            epochs_completed=curve[-1]["epoch"], curve=curve, final_test_acc=curve[-1]["test_acc"],
            final_tta_acc=self.tta_acc, final_val_acc=curve[-1]["val_acc"], final_tta_val_acc=self.tta_val,
            time_to_acc=time_to, epochs_to_acc=epochs_to, train_time_s=self.train_time, train_cpu_s=self.cpu_train,
            eval_time_s=self.eval_time, tta_eval_time_s=self.tta_time, setup_time_s=self.setup_time, img_per_s=ips,
            gflops=(6 * self.macs * ips / 1e9) if (self.macs and ips) else None, stopped_reason=self.stopped,
            threads=torch.get_num_threads(), cpu=device_name("cpu"), torch_version=torch.__version__,
            python_version=platform.python_version(),
        )


def _forward_macs(net: nn.Module, input_size: tuple[int, int, int]) -> int | None:
    """Forward MACs per image for the ``macs_per_image`` / ``gflops`` report fields (the profiler is imported
    lazily, only for them; the run does not depend on it)."""
    try:
        from blockzoo.profile import count_macs
        return int(count_macs(net, input_size).macs)
    except Exception:
        return None
