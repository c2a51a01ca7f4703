"""Training configuration: one flat dataclass whose fields map 1:1 to ``blockzoo train`` CLI flags.

Field ``foo_bar`` is flag ``--foo-bar``; booleans are ``--x`` / ``--no-x`` switches; ``None`` means "pick the
documented default for the chosen optimizer / device". Each field's description is its ``help`` metadata (the one
source of ``blockzoo train --help``); fields with fixed values list them as ``choices``. :meth:`TrainConfig.resolved`
returns a copy with every ``None`` filled in, which is what the trainer records in ``result.json`` and in checkpoints.

Defaults are tuned for ResNet-20 on Fashion-MNIST on a small CPU: one-cycle SGD with Nesterov momentum, label
smoothing 0.1, bf16 autocast where the CPU has bf16 units (fp32 where it would be emulated) and channels-last.
"""
from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from blockzoo.checks import check_choice, check_int, check_positive
from blockzoo.errors import ConfigError

from .distill import DISTILL_MODES
from .logger import parse_log

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "DEFAULT_TTA_THRESHOLDS", "RECIPES"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant", "airbench")
PRECISIONS = ("auto", "bf16", "fp32", "amp", "fp16")
DEFAULT_TTA_THRESHOLDS = (0.90, 0.92, 0.93, 0.94)

#: SGD peak learning rate per 128 images (scaled linearly with the batch size); AdamW peak lr (not scaled).
SGD_LR_PER_128 = 0.1
ADAMW_LR = 2e-3
SGD_WEIGHT_DECAY = 5e-4
ADAMW_WEIGHT_DECAY = 0.05
#: airbench's step-size normaliser for momentum 0.85: 1 + 1 / (1 - momentum)
_AIRBENCH_KILO = 1 + 1 / (1 - 0.85)


def _dataset_names() -> list[str]:
    from blockzoo.data.registry import DATASETS
    return sorted(DATASETS)


def _opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
         **metadata: Any) -> Any:
    """A field with its description (``help``) and, where the values are fixed, its ``choices`` as metadata;
    ``names`` (a callable) lists the usual values in the help without restricting them."""
    return field(default=default, default_factory=factory, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything that defines a training run. Each field is described by its ``help`` metadata (shown by
    ``blockzoo train --help``; see the module docstring for the flag mapping).

    The LR schedule is computed per optimizer step from the global step, so a resumed run follows the same curve.
    A model passed to :func:`~blockzoo.train.train` ready-made is initialised by the caller, not by ``seed``.
    """

    model: str = _opt("resnet20", "registered model name")
    slots: dict[str, Any] = _opt(help="slot overrides, e.g. {'attn': 'eca'} (flag --set SLOT=BLOCK)", factory=dict)
    model_kwargs: dict[str, Any] = _opt(help="other constructor options, e.g. {'drop_rate': 0.1} "
                                             "(flag --model-arg KEY=VALUE)", factory=dict)
    pretrained: bool = _opt(False, "start from timm's published weights for --model (downloaded once from the "
                                   "Hugging Face hub; a new classifier where the dataset's classes differ)")
    checkpoint_path: str | None = _opt(None, "start from these weights: a blockzoo weights or checkpoint file, or a "
                                             "state dict in blockzoo's or timm's key layout (.safetensors, .pth)")
    data: str = _opt("fashion-mnist", "dataset: the path of an image folder DIR (DIR/train/<class>/*.png, "
                                      "DIR/val/<class>/...) or a registered name (it wins over a folder of that name: "
                                      "write ./NAME for the folder); registered", names=_dataset_names)
    data_dir: str | None = _opt(None, "folder holding the dataset files (default: $BLOCKZOO_DATA or the standard "
                                      "locations; see `blockzoo data fetch`)")
    subset: int | None = _opt(None, "train on only this many training images (default: all)")
    test_subset: int | None = _opt(None, "evaluate on only this many test images, class-stratified, the same ones "
                                         "for every seed (default: all)")
    verify: bool = _opt(True, "check the dataset files' checksums; --no-verify loads CIFAR/MNIST-format files of "
                              "your own under the registered file names (their structure is always checked)")
    img_size: int | None = _opt(None, "image folders: resize every image to this square size (default: the training "
                                      "split's most common size; aspect kept, centre-cropped)")
    epochs: int = _opt(10, "training epochs")
    batch_size: int = _opt(128, "training batch size; under torchrun the global batch, split evenly over the "
                                "processes")
    eval_batch_size: int | None = _opt(None, "test batch size (default: 2 x --batch-size)")
    optimizer: str = _opt("sgd", "sgd (momentum --momentum, Nesterov if --nesterov) or adamw (betas 0.9/0.999, "
                                 "decoupled weight decay)", choices=OPTIMIZERS)
    lr: float | None = _opt(None, "peak learning rate (default: sgd 0.1 x batch size / 128, the linear scaling "
                                  "rule; adamw 2e-3)")
    momentum: float = _opt(0.9, "SGD momentum, in [0, 1)")
    nesterov: bool = _opt(True, "Nesterov momentum (sgd)")
    weight_decay: float | None = _opt(None, "weight decay (default: sgd 5e-4, adamw 0.05); not applied to biases "
                                            "and other 1-D parameters unless --wd-norm-bias")
    wd_norm_bias: bool = _opt(False, "apply weight decay to biases and norm scales/shifts too")
    norm_lr_scale: float = _opt(1.0, "learning-rate multiplier for the scales/shifts of norm layers (airbench: "
                                     "64); their weight decay is divided by it, so they decay at the same rate per "
                                     "step as the other parameters")
    clip_grad_norm: float | None = _opt(None, "clip the global gradient L2 norm to this value (default: no "
                                              "clipping)")
    grad_noise: float = _opt(0.0, "annealed gradient noise (Neelakantan et al. 2015): add N(0, sigma_t^2) to every "
                                  "gradient at step t, sigma_t^2 = eta / (1 + t)^gamma, this value is eta (paper: "
                                  "0.01, 0.3 or 1.0); 0 = off")
    grad_noise_decay: float = _opt(0.55, "gamma of --grad-noise's annealing (paper: 0.55)")
    gradinit: int = _opt(0, "GradInit (Zhu et al. 2021) on a new run: this many iterations learning one scale per "
                            "parameter tensor so that one step of --optimizer at --lr gives the lowest loss under "
                            "the gradient-norm bound (blockzoo.train.gradinit; official: 390), on the training data "
                            "with the run's seed; 0 = off")
    gradinit_lr: float = _opt(1e-3, "GradInit's Adam learning rate on the scales (official: 1e-3; 1e-2 to 5e-2 for "
                                    "nets without BN)")
    schedule: str = _opt("onecycle", "LR schedule after the linear warm-up: onecycle (linear decay to 0), cosine "
                                     "(cosine decay to 0), constant, or airbench (from 0.2 x peak up to the peak over "
                                     "the warm-up, then linear to 0)", choices=SCHEDULES)
    warmup_epochs: float = _opt(1.0, "linear warm-up in epochs (may be fractional; capped at half of the run so "
                                     "that short runs still anneal)")
    label_smoothing: float = _opt(0.1, "label smoothing of the training loss, in [0, 1) (the reported test loss is "
                                       "plain cross-entropy)")
    precision: str = _opt("auto", "auto (bf16 autocast where the device computes bf16 in hardware: CUDA with bf16, "
                                  "CPUs with AVX512-BF16 or AMX; otherwise fp32 on CPU, fp16 + GradScaler on CUDA), "
                                  "bf16 autocast, fp32, fp16 autocast + GradScaler, or amp (the device's usual mixed "
                                  "precision: fp16 + GradScaler on CUDA, bf16 on CPU); result.json records the one "
                                  "used",
                          choices=PRECISIONS)
    channels_last: bool = _opt(True, "NHWC memory format for the model and the batches")
    augment: bool = _opt(True, "random crop + flip (as implemented by blockzoo.data.Loader)")
    aa: str | None = _opt(None, "RandAugment as timm writes it, rand-m<M>-n<N> (e.g. rand-m9-n2: N ops of magnitude "
                                "M on timm's 0..10 scale; kornia, pip install 'blockzoo[data]') (default: off)")
    reprob: float = _opt(0.0, "random-erasing probability per training image, in [0, 1] (timm's --reprob; the "
                              "erased box is filled with the dataset mean)")
    mixup: float = _opt(0.0, "MixUp alpha: each training batch is mixed with its reverse, weight ~ Beta(alpha, "
                             "alpha) (timm's --mixup); 0 = off")
    cutmix: float = _opt(0.0, "CutMix alpha (timm's --cutmix); with --mixup as well, each batch uses one of the "
                              "two, chosen with probability 1/2; 0 = off")
    lookahead: bool = _opt(False, "airbench's weight averaging: every 5 steps the weights move to an EMA of "
                                  "themselves (decay 0.95^5 x (step / total)^3); the EMA is installed at the end")
    data_init: bool = _opt(False, "a new run starts with the model's data-dependent initialisation where it has "
                                  "one (init_from_data: SpeedNet's whitening conv, set from 5000 training images, "
                                  "its bias trained for 3 epochs), timed as training")
    test_time_aug: int = _opt(0, "also report the final test accuracy with test-time augmentation (final_tta_acc): "
                                 "1 = mean of the image and its mirror, 2 = airbench's level 2 (plus the mirrored "
                                 "pairs shifted by one pixel diagonally); 0 = off", choices=(0, 1, 2))
    teachers: list[str] = _opt(help="--distill's teachers: blockzoo checkpoints or weights files (their model spec "
                                    "rebuilds each one; frozen, eval mode, not saved with the student)",
                               factory=list, flag="--teacher", metavar="CKPT")
    distill: str = _opt("none", "knowledge distillation from the --teacher ensemble (blockzoo.train.distill): "
                                "meal_v2 (Shen & Savvides 2020: KL to the mean of the teachers' softmax plus a "
                                "discriminator on the outputs, no hard labels), ferkd (Shen 2023: soft labels with "
                                "less-confident crops calibrated to softened hard labels, SelfMix), or none; with it "
                                "the default --weight-decay is 0 (MEAL V2's recipe) and --label-smoothing does not "
                                "apply", choices=DISTILL_MODES)
    distill_temperature: float = _opt(1.0, "softmax temperature T of --distill's KL loss (scaled by T^2; MEAL V2: 1)")
    ferkd_threshold: float = _opt(0.5, "--distill ferkd: crops whose teacher probability of the true class is below "
                                       "this get the softened hard label (not the paper's value, which could not be "
                                       "read: see blockzoo.train.distill)")
    ferkd_smoothing: float = _opt(0.1, "--distill ferkd: label smoothing of the softened hard label, in [0, 1)")
    seed: int = _opt(0, "seeds torch, numpy, random and the data order")
    deterministic: bool = _opt(False, "deterministic algorithms and cuDNN for the run: on CPU a resumed run is "
                                      "bit-identical to an uninterrupted one with the same thread count; best "
                                      "effort on GPU")
    threads: int | None = _opt(None, "torch.set_num_threads for the run, restored afterwards (default: leave it)")
    device: str = _opt("auto", "auto (CUDA if available, else CPU) or a torch device: cpu, cuda, cuda:1")
    sync_bn: bool = _opt(False, "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA "
                                "only) instead of each process's batch/N images")
    out_dir: str | None = _opt(None, "run directory for metrics.jsonl, result.json, last.safetensors and "
                                     "best.safetensors (default: runs/<model>-<data>-seed<seed>)")
    resume: bool = _opt(False, "continue from <run dir>/last.safetensors if it exists")
    overwrite: bool = _opt(False, "replace a run already in the run directory (without it, a run with other "
                                  "settings is refused and one with the same settings is continued)")
    checkpoint: bool = _opt(True, "write last.safetensors and best.safetensors every epoch")
    eval_every: int = _opt(1, "evaluate on the test set every N epochs (and always after the last one)")
    progress: bool = _opt(True, "show a progress bar")
    log: str = _opt("csv", "metrics loggers, comma-separated: csv (steps.csv + epochs.csv in the run folder), "
                           "tensorboard (<run folder>/tensorboard; pip install 'blockzoo[log]'), or none")
    max_train_time_s: float | None = _opt(None, "stop once this many seconds of training (eval excluded) are "
                                                "spent, evaluate and finish (default: no limit)")
    tta_thresholds: list[float] = _opt(help="test accuracies for the time-to-accuracy report",
                                       factory=lambda: list(DEFAULT_TTA_THRESHOLDS))

    # ------------------------------------------------------------------------------------------------------ helpers
    def validate(self) -> TrainConfig:
        """Raise :class:`~blockzoo.errors.ConfigError` (a ``ValueError``) naming the flag and the accepted values
        for a setting of the wrong type or out of range (numbers must be finite); returns self."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                raise ConfigError(f"{_flag(f.name)} must be {_type_words(hints[f.name])}, got {value!r}")
            if "choices" in f.metadata:
                check_choice(value, _flag(f.name), f.metadata["choices"])
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "threads", "subset"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), _flag(name), min_value=1)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be an integer in [0, 2**32), got {self.seed!r}")
        for name in ("lr", "clip_grad_norm", "max_train_time_s", "norm_lr_scale", "gradinit_lr"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), _flag(name))
        check_int(self.gradinit, "--gradinit", min_value=0)
        for name in ("weight_decay", "warmup_epochs", "grad_noise", "grad_noise_decay"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), _flag(name), allow_zero=True)
        for name in ("momentum", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{_flag(name)} must be a number in [0, 1), got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: pass --resume to continue the run in "
                              "the run directory or --overwrite to replace it, not both")
        parse_log(self.log)
        _check_data_options(self)
        _check_distill_options(self)
        if not self.model:
            raise ConfigError("the model name is empty; pass a registered model name (see `blockzoo list models`)")
        for t in self.tta_thresholds:
            if not _has_type(t, float) or not 0 < t <= 1:
                raise ConfigError(f"--tta-thresholds must be accuracies in (0, 1], got {self.tta_thresholds!r}")
        return self

    def resolved(self) -> TrainConfig:
        """A validated copy with the optimizer-dependent ``None`` defaults (lr, weight decay, eval batch, out dir)
        filled in. Device and precision stay symbolic; the trainer records the effective ones separately."""
        self.validate()
        cfg = dataclasses.replace(self, slots=dict(self.slots), model_kwargs=dict(self.model_kwargs),
                                  tta_thresholds=[float(t) for t in self.tta_thresholds])
        if cfg.lr is None:
            cfg.lr = SGD_LR_PER_128 * cfg.batch_size / 128 if cfg.optimizer == "sgd" else ADAMW_LR
        if cfg.weight_decay is None and cfg.distill != "none":
            cfg.weight_decay = 0.0   # MEAL V2's recipe: weight decay removed for distillation
        if cfg.weight_decay is None:
            cfg.weight_decay = SGD_WEIGHT_DECAY if cfg.optimizer == "sgd" else ADAMW_WEIGHT_DECAY
        if cfg.eval_batch_size is None:
            cfg.eval_batch_size = 2 * cfg.batch_size
        if cfg.out_dir is None:
            from blockzoo.data import dataset_label  # an image folder by its name, not by its path
            cfg.out_dir = f"runs/{cfg.model}-{dataset_label(cfg.data)}-seed{cfg.seed}"
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_recipe(cls, recipe: str, **fields: Any) -> TrainConfig:
        """A config with the :data:`RECIPES` preset ``recipe`` as the defaults and ``fields`` on top."""
        check_choice(recipe, "--recipe", tuple(RECIPES))
        return cls(**{**RECIPES[recipe], **fields})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~blockzoo.errors.ConfigError` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)


#: Named presets of TrainConfig fields (``blockzoo train/compare --recipe NAME``, :meth:`TrainConfig.from_recipe`):
#: a recipe only sets the defaults of these fields (flags given explicitly win), so a run records and hashes the
#: values it used, never the recipe's name.
#:
#: ``fast``: the speed-run recipe of :mod:`blockzoo.train.speedrun` (airbench's). airbench gives lr and weight decay
#: "per 1024 examples" of a *summed* loss, divided by ``1 + 1 / (1 - momentum)``; for this trainer's mean loss at
#: batch 1024 that is lr = 11.5 / 7.667 = 1.5 and a per-step decay of 0.0153 / 7.667, i.e. weight_decay = that / lr.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": dict(epochs=5, batch_size=1024, eval_batch_size=2000, optimizer="sgd", lr=11.5 / _AIRBENCH_KILO,
                 momentum=0.85, nesterov=True, weight_decay=0.0153 / _AIRBENCH_KILO / (11.5 / _AIRBENCH_KILO),
                 wd_norm_bias=True, norm_lr_scale=64.0, schedule="airbench", warmup_epochs=1.0, label_smoothing=0.2,
                 augment=True, lookahead=True, data_init=True, test_time_aug=2),
}


def _check_data_options(cfg: TrainConfig) -> None:
    """The ranges of the data and augmentation options (their types are checked with every field's)."""
    from blockzoo.data import check_img_size
    from blockzoo.data.augment import check_batch_augment

    for name in ("test_subset", "img_size"):
        if getattr(cfg, name) is not None:
            check_int(getattr(cfg, name), _flag(name), min_value=1)
    check_img_size(cfg.data, cfg.img_size)
    check_batch_augment(cfg.aa, cfg.reprob, cfg.mixup, cfg.cutmix)


def _check_distill_options(cfg: TrainConfig) -> None:
    """``--distill`` needs teachers and teachers need ``--distill``; the ranges of its options."""
    if cfg.distill != "none" and not cfg.teachers:
        raise ConfigError(f"--distill {cfg.distill} needs teachers: pass --teacher CKPT (once per teacher)")
    if cfg.teachers and cfg.distill == "none":
        raise ConfigError("--teacher is used only for distillation: add --distill meal_v2 or --distill ferkd, or "
                          "drop --teacher")
    if not all(isinstance(t, str) and t for t in cfg.teachers):
        raise ConfigError(f"--teacher must name checkpoint files, got {cfg.teachers!r}")
    check_positive(cfg.distill_temperature, "--distill-temperature")
    if not 0 <= cfg.ferkd_threshold <= 1:
        raise ConfigError(f"--ferkd-threshold must be a probability in [0, 1], got {cfg.ferkd_threshold!r}")
    if not 0 <= cfg.ferkd_smoothing < 1:
        raise ConfigError(f"--ferkd-smoothing must be a number in [0, 1), got {cfg.ferkd_smoothing!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a dict",
               list[float]: "a list of numbers", list[str]: "a list of strings"}


def _has_type(value: Any, tp: Any) -> bool:
    """``value`` fits the field annotation ``tp`` (``int | None``, ``float``, ``dict[str, Any]`` ...); bools are not
    integers or numbers, integers are numbers."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_has_type(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if typing.get_origin(tp) is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, typing.get_origin(tp) or tp)


def _type_words(tp: Any) -> str:
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return " or ".join(_TYPE_WORDS[t if t in _TYPE_WORDS else typing.get_origin(t) or t] for t in members
                       if t is not type(None))
