"""Knowledge distillation from blockzoo checkpoints, the trainer's ``--distill``: MEAL V2 and FerKD.

Papers:

* MEAL V2 (S027; ``papers.MEAL_V2``): Shen & Savvides, "MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on
  ImageNet without Tricks", arXiv:2009.08453; official code github.com/szq0214/MEAL-V2.
* FerKD (S062; ``papers.FERKD``): Shen, "FerKD: Surgical Label Adaptation for Efficient Distillation", ICCV 2023;
  official page github.com/szq0214/FKD/tree/main/FerKD.

The teachers are blockzoo checkpoints or weights files (``--teacher CKPT``, repeatable), each rebuilt from the model
spec it carries with the safe loader :func:`blockzoo.train.checkpoint.load_model` (safetensors, no pickles), then
frozen (``requires_grad=False``) and kept in eval mode. They are not part of the student: they are not in its
optimizer, not in its checkpoints, and evaluation stays the student's plain test accuracy.

MEAL V2 (``--distill meal_v2``), as the paper describes it:

* the soft target is the average of the teachers' softmax probabilities, ``p_e = 1/K sum_k softmax(z_k)``;
* the similarity loss is the KL divergence ``KL(p_e || softmax(z_s))`` of the student's output from it (the
  official code computes the cross-entropy ``-sum p_e log p_s``, which differs by the entropy of ``p_e``, a constant
  of the student: the gradients are the same); no one-hot labels enter the loss;
* a discriminator on the final outputs only: three fully connected layers and a sigmoid, trained with binary
  cross-entropy to tell the teachers' outputs (label 1) from the student's (label 0); the training loss is the sum
  ``L_KL + L_D``, minimised by the student and the discriminator together (the paper's total loss; the official code
  does the same, without a gradient reversal);
* the weight decay is removed: with ``--distill`` the default ``--weight-decay`` is 0 (the official
  ``--weight-decay`` default; the paper: "weight decay weakened/removed").

Where the official code differs (facts read from its ``models/discriminator.py``, ``loss.py``, ``train.py``):
its discriminator has two outputs (``[1, 0]`` for the student, ``[0, 1]`` for the teachers, under
``BCEWithLogitsLoss``) and a ReLU after its last layer too; ``MealV2Discriminator(official=True)`` builds that
variant. Its layer widths are ``C -> C/8 -> C/64`` (``K=8`` for 1000 classes); at 10 classes that is zero-wide, so
here the hidden widths are ``max(C // 8, 8)`` and ``max(C // 64, 8)`` (an adaptation to small class counts). The
teachers' side of its input is the mean of the teachers' logits (``soft_no_softmax``), as here. The discriminator
is trained by the same SGD with learning rate ``1e-4`` against the student's ``0.01``: here it is a parameter group
of the student's optimizer with ``lr_scale`` :data:`DISC_LR_SCALE` = 0.01 (the same ratio) and no weight decay.
``--distill-temperature T`` (default 1, MEAL V2 uses none) softens both distributions as Hinton et al. do, with the
loss multiplied by ``T^2``.

FerKD (``--distill ferkd``; the official repository publishes only precomputed soft labels, no training code for
the label adaptation, and the paper's text could not be read here, so the rule below follows the abstract and its
thresholds are this module's choices, not the paper's values):

* partial soft-hard label adaptation with hard-region mining: the "regions" are the random crops the trainer's
  loader already makes (:mod:`blockzoo.data.augment`), each sample of a batch being one region. The teacher
  ensemble's probability of the true class on that crop measures its reliability; crops where it is below
  ``--ferkd-threshold`` (default 0.5: the teachers no longer put most of their mass on the true class) are
  "less-confident regions" and get the softened hard label ``(1 - eps) * onehot(y) + eps / C`` (``eps`` =
  ``--ferkd-smoothing``, default 0.1) as their target instead of the teachers' soft label; the others keep the
  teachers' soft label. The loss is the KL divergence of the student from these targets (:func:`ferkd_targets`).
  With MixUp / CutMix ``y`` is already soft and is smoothed the same way;
* stabilized SelfMix: each batch is mixed with a second random crop of *the same images* (a CutMix box of area
  ``1 - lam``, ``lam ~ Beta(1, 1)`` per batch, filled from each image shifted by a random offset in the loader's
  crop range), so the mixed regions are similar and the teachers' soft labels of the mixed image vary little; the
  teachers label the mixed image itself (online teachers), so no label mixing is needed (:func:`selfmix`).
  The draws come from a generator seeded by (seed, global step): a resumed run draws what the uninterrupted one did.

Not supported yet: distillation under torchrun (the discriminator is not wrapped in DistributedDataParallel).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.errors import ConfigError

__all__ = ["DISTILL_MODES", "DISC_LR_SCALE", "DISC_REDUCTION", "load_teachers", "ensemble_soft_target",
           "kl_to_target", "MealV2Discriminator", "discriminator_loss", "ferkd_targets", "selfmix", "Distiller"]

DISTILL_MODES = ("none", "meal_v2", "ferkd")
#: the discriminator's learning rate relative to the student's (official: ``--d_lr 1e-4`` vs ``--lr 0.01``)
DISC_LR_SCALE = 0.01
#: the official discriminator's width reduction per layer (``K=8``)
DISC_REDUCTION = 8
#: the smallest hidden width of the discriminator (an adaptation: the official widths vanish at small class counts)
DISC_MIN_WIDTH = 8


# ------------------------------------------------------------------------------------------------------- teachers
def load_teachers(paths: Sequence[str], *, num_classes: int, in_chans: int,
                  device: str | torch.device = "cpu", channels_last: bool = False) -> list[nn.Module]:
    """Rebuild each teacher from its checkpoint or weights file (safe loader, model spec in the file), check that it
    predicts ``num_classes`` classes from ``in_chans``-channel images, freeze it and put it in eval mode."""
    from .checkpoint import load_model, read_model_spec

    teachers = []
    for path in paths:
        spec = read_model_spec(path)
        if spec is not None and (spec["num_classes"] != num_classes or spec["in_chans"] != in_chans):
            raise ConfigError(f"teacher {os.fspath(path)!r} predicts {spec['num_classes']} classes from "
                              f"{spec['in_chans']}-channel images, the student {num_classes} from {in_chans}; pass "
                              f"--teacher checkpoints trained on the same dataset as the student")
        t = load_model(path).to(device)   # no spec: a CheckpointError naming the fix
        t.requires_grad_(False)
        if channels_last:
            t.to(memory_format=torch.channels_last)
        teachers.append(t.eval())
    return teachers


# ---------------------------------------------------------------------------------------------------------- losses
def ensemble_soft_target(teacher_logits: Sequence[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """MEAL V2's soft target: the mean of the teachers' softmax probabilities, ``1/K sum_k softmax(z_k / T)``."""
    return torch.stack([F.softmax(z.float() / temperature, dim=1) for z in teacher_logits]).mean(0)


def kl_to_target(student_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * mean_b KL(target_b || softmax(z_s,b / T))`` (``0 log 0 = 0``): the distillation loss; 0 where the
    student's distribution equals the target."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    kl = (torch.xlogy(target, target) - target * log_p).sum(1)
    return kl.mean() * temperature ** 2


class MealV2Discriminator(nn.Module):
    """MEAL V2's discriminator on the final outputs: three fully connected layers ``C -> h1 -> h2 -> 1`` with ReLU
    between them, its output a logit of "comes from the teachers" (sigmoid + BCE in :func:`discriminator_loss`);
    ``h1 = max(C // 8, 8)``, ``h2 = max(C // 64, 8)``. ``official=True``: the official layout, two outputs with a
    ReLU after the last layer too (module docstring)."""

    def __init__(self, num_classes: int, *, reduction: int = DISC_REDUCTION, official: bool = False) -> None:
        super().__init__()
        h1 = max(num_classes // reduction, DISC_MIN_WIDTH)
        h2 = max(h1 // reduction, DISC_MIN_WIDTH)
        self.official = bool(official)
        self.fc1, self.fc2 = nn.Linear(num_classes, h1), nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 2 if official else 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.fc3(F.relu(self.fc2(F.relu(self.fc1(z)))))
        return F.relu(out) if self.official else out.squeeze(1)


def discriminator_loss(disc: MealV2Discriminator, student_logits: torch.Tensor,
                       teacher_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the discriminator over the student's outputs (label 0) and the teachers' (label 1),
    both halves of the batch together (the official two-output variant: targets ``[1, 0]`` / ``[0, 1]``)."""
    z = torch.cat([student_logits.float(), teacher_logits.float()])
    n = student_logits.shape[0]
    is_teacher = torch.cat([torch.zeros(n, device=z.device), torch.ones(n, device=z.device)])
    if disc.official:
        return F.binary_cross_entropy_with_logits(disc(z), torch.stack([1 - is_teacher, is_teacher], 1))
    return F.binary_cross_entropy_with_logits(disc(z), is_teacher)


def ferkd_targets(teacher_probs: torch.Tensor, y: torch.Tensor, *, threshold: float,
                  smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FerKD's partial soft-hard label adaptation (module docstring): ``(targets, calibrated)``; a region (row)
    whose teacher probability of the true class is below ``threshold`` gets the softened hard label
    ``(1 - smoothing) * onehot(y) + smoothing / C`` (``calibrated`` True), the others the teachers' probabilities.
    ``y``: int64 labels (B) or soft targets (B x C)."""
    c = teacher_probs.shape[1]
    hard = F.one_hot(y, c).to(teacher_probs.dtype) if y.dim() == 1 else y.to(teacher_probs.dtype)
    confidence = (teacher_probs * hard).sum(1)
    calibrated = confidence < threshold
    softened = hard * (1 - smoothing) + smoothing / c
    return torch.where(calibrated[:, None], softened, teacher_probs), calibrated


def selfmix(x: torch.Tensor, generator: torch.Generator, pad: int) -> torch.Tensor:
    """Stabilized SelfMix, adapted (module docstring): a CutMix box of area ``1 - lam`` (``lam ~ Beta(1, 1)``, the
    box as in :meth:`blockzoo.data.augment.BatchAugment.mix`) filled from each image shifted by a random offset in
    ``-pad..pad`` (zero fill, i.e. the dataset mean). All draws from ``generator`` (CPU)."""
    from blockzoo.data.augment import crop_flip

    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    lam = float(torch.rand((), generator=generator))       # Beta(1, 1) is U(0, 1)
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy, cx = int(torch.randint(h, (), generator=generator)), int(torch.randint(w, (), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    other = crop_flip(x, dy, dx, None, pad)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = other[:, :, y0:y1, x0:x1]
    return out


# -------------------------------------------------------------------------------------------------------- trainer
class Distiller:
    """The trainer's distillation state for ``cfg.distill`` in ``("meal_v2", "ferkd")``: the frozen teachers, MEAL
    V2's discriminator and the loss of one training step (:meth:`step_loss`)."""

    def __init__(self, cfg: Any, train_set: Any, device: torch.device, world_size: int = 1) -> None:
        from blockzoo.data.loader import default_crop_padding

        if world_size > 1:
            raise ConfigError("--distill does not run under torchrun yet (the discriminator is not synchronised); "
                              "distil in a single process")
        self.mode, self.temperature, self.seed = cfg.distill, float(cfg.distill_temperature), int(cfg.seed)
        self.threshold, self.smoothing = float(cfg.ferkd_threshold), float(cfg.ferkd_smoothing)
        self.num_classes = int(train_set.num_classes)
        self.teachers = load_teachers(cfg.teachers, num_classes=self.num_classes, in_chans=int(train_set.in_chans),
                                      device=device, channels_last=cfg.channels_last)
        self.pad = default_crop_padding(tuple(train_set.image_size))
        self.disc = MealV2Discriminator(self.num_classes).to(device) if self.mode == "meal_v2" else None

    def add_param_groups(self, optimizer: torch.optim.Optimizer) -> None:
        """MEAL V2: the discriminator joins the student's optimizer (learning rate x :data:`DISC_LR_SCALE`, no
        weight decay)."""
        if self.disc is not None:
            optimizer.add_param_group({"params": list(self.disc.parameters()), "weight_decay": 0.0,
                                       "lr_scale": DISC_LR_SCALE})

    def step_loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(student logits, loss)`` of one training step; ``y`` is used only by FerKD's label adaptation."""
        if self.mode == "ferkd":
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) % 2**63)
            x = selfmix(x, g, self.pad)
        with torch.no_grad():
            t_logits = [t(x).float() for t in self.teachers]
        target = ensemble_soft_target(t_logits, self.temperature)
        out = net(x)
        if self.mode == "ferkd":
            target, _ = ferkd_targets(target, y, threshold=self.threshold, smoothing=self.smoothing)
            return out, kl_to_target(out, target, self.temperature)
        loss = kl_to_target(out, target, self.temperature)
        return out, loss + discriminator_loss(self.disc, out, torch.stack(t_logits).mean(0))

    def state(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume (the discriminator's weights; the teachers are files)."""
        return {"discriminator": self.disc.state_dict()} if self.disc is not None else {}

    def load_state(self, extra: dict[str, Any], path: str) -> None:
        from blockzoo.errors import CheckpointError
        if self.disc is None:
            return
        state = extra.get("discriminator")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path!r} holds no MEAL V2 discriminator (saved without --distill meal_v2?). "
                                  f"Fix: rerun with the settings it was saved with, or with --overwrite")
        self.disc.load_state_dict(state)
