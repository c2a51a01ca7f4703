"""Shared by the normalisation claim runs (``norm_*.py``) and the other claim scripts that train on a Fashion-MNIST
subset (``prune_*.py``, ``quant_*.py``): their command-line options, Fashion-MNIST subsets, a plain SGD loop whose
parameter groups honour the blocks' declared learning-rate multipliers (``param_lr_scale``, see
``blockzoo.blocks.norm.bn_init``), evaluation, and the paired-difference verdict rule."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo.data import Loader, load_dataset
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.train.trainer import param_lr_scales

#: the smoke run's sizes (seconds): what a script has of these is set, :func:`parse`'s keywords on top
SMOKE = dict(train=64, test=32, epochs=1, seeds=2)


def add_options(p: argparse.ArgumentParser, *, train: int, test: int | None, epochs: int,
                batch_size: int | None = 64, lr: float | None = 0.1, weight_decay: float | None = None,
                seeds: int = 3) -> None:
    """The options of a claim script trained on a Fashion-MNIST subset (``test`` / ``batch_size`` / ``lr`` /
    ``weight_decay`` ``None``: the script has no such option), with ``--threads``, ``--smoke`` and ``--out-dir``."""
    p.add_argument("--train", type=int, default=train, help="training images (class-stratified subset)")
    if test is not None:
        p.add_argument("--test", type=int, default=test, help="test images")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seeds", type=int, default=seeds)
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size)
    if lr is not None:
        p.add_argument("--lr", type=float, default=lr)
    if weight_decay is not None:
        p.add_argument("--weight-decay", type=float, default=weight_decay)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run (tiny data, 2 seeds, 1 epoch)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")


def parse(p: argparse.ArgumentParser, argv: list[str] | None, **smoke) -> argparse.Namespace:
    """The parsed options, with the smoke run's sizes (:data:`SMOKE`, ``smoke`` on top) applied under ``--smoke``, and
    torch's thread count set."""
    a = p.parse_args(argv)
    if a.smoke:
        for k, v in {**SMOKE, **smoke}.items():
            if hasattr(a, k):
                setattr(a, k, v)
    torch.set_num_threads(a.threads)
    return a


def fashion_subsets(train: int, test: int, seed: int = 0):
    """Class-stratified Fashion-MNIST subsets (the same images for every seed and variant)."""
    return (load_dataset("fashion-mnist", "train", subset=train, seed=seed),
            load_dataset("fashion-mnist", "test", subset=test, seed=0))


def sgd_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Weight decay on >= 2-D weights only; every parameter's lr times its declared multiplier (1 if none)."""
    scales = param_lr_scales(model)
    groups: dict[tuple[bool, float], list] = {}
    for p in model.parameters():
        groups.setdefault((p.ndim >= 2, scales.get(id(p), 1.0)), []).append(p)
    return [{"params": ps, "lr": lr * s, "initial_lr": lr * s, "weight_decay": weight_decay if decay else 0.0}
            for (decay, s), ps in groups.items()]


def train(model: nn.Module, train_set, *, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
          augment: bool = False) -> list[float]:
    """SGD (momentum 0.9, Nesterov) with a cosine learning-rate decay per step; returns the mean loss per epoch."""
    torch.manual_seed(seed)
    loader = Loader(train_set, batch_size, train=True, augment=augment, seed=seed)
    opt = torch.optim.SGD(sgd_groups(model, lr, weight_decay), lr=lr, momentum=0.9, nesterov=True)
    total, step, losses = epochs * len(loader), 0, []
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        run = 0.0
        for x, y in loader:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += loss.item()
            step += 1
        losses.append(run / len(loader))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, test_set, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             seed: int = 0) -> float:
    """Top-1 accuracy (eval mode); ``transform`` corrupts each normalised batch (seeded)."""
    model.eval()
    torch.manual_seed(seed)
    right = n = 0
    for x, y in Loader(test_set, 256, train=False):
        if transform is not None:
            x = transform(x)
        right += (model(x).argmax(1) == y).sum().item()
        n += len(y)
    return right / n


def paired_verdict(new: list[float], base: list[float], unit: str = "") -> tuple[str, str, dict]:
    """Rule: with d = new - base per seed, "reproduced" if mean(d) > 2 * sd(d) / sqrt(n) (a gain beyond twice its
    standard error), "not reproduced" if mean(d) < -2 * sd(d) / sqrt(n) (a loss as clear), else "inconclusive"
    (always with fewer than 2 seeds)."""
    t = paired_ttest(new, base)
    se = t.std_diff / math.sqrt(t.n)
    verdict = ("inconclusive" if t.n < 2 else "reproduced" if t.mean_diff > 2 * se
               else "not reproduced" if t.mean_diff < -2 * se else "inconclusive")
    (mn, sn), (mb, sb) = mean_std(new), mean_std(base)
    det = detectable_difference(t.std_diff, t.n)
    line = (f"{mn:.4f} ± {sn:.4f} vs {mb:.4f} ± {sb:.4f}{unit}; paired difference {t.mean_diff:+.4f} ± {t.std_diff:.4f}"
            f" (n = {t.n}, p = {t.p_value if t.p_value is None else round(t.p_value, 3)}; detectable at 80% power: "
            f"{'n/a' if det is None else f'{det:.4f}'})")
    return verdict, line, t.to_dict()


RULE = ("per seed d = new - baseline; reproduced if mean(d) > 2 sd(d)/sqrt(n), not reproduced if mean(d) < "
        "-2 sd(d)/sqrt(n), else inconclusive")
