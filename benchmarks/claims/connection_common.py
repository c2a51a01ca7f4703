"""What the connection claim runs (``connection_shallow.py``, S012; ``connection_hyper.py``, S001) share: the data
(a Fashion-MNIST subset, average-pooled 2x to 14 x 14 inside the model to fit the CPU budget; synthetic data for the
smoke runs), the training call (:func:`blockzoo.train.train`, SGD with momentum or AdamW, cosine schedule, no
augmentation) and the command-line options every such script has. The other claim runs trained through
:func:`blockzoo.train.train` on a subset of a registered dataset (``elu_depth.py``, ``gcp_lr_decay.py``,
``gradinit_no_norm.py``) share the data part: :func:`add_data_options` and :func:`load`."""
from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from blockzoo.data import load_dataset
from blockzoo.train import TrainConfig, train


def add_options(p: argparse.ArgumentParser, *, subset: int, epochs: int, seeds: int, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                   help="sgd: momentum 0.9, weight decay 5e-4; adamw: weight decay 0.05 (DeiT's)")
    add_data_options(p, subset=subset, seeds=seeds)


def add_data_options(p: argparse.ArgumentParser, *, subset: int, seeds: int) -> None:
    """The data, seed, thread and output options of a claim run trained on a dataset subset."""
    p.add_argument("--subset", type=int, default=subset, help="Fashion-MNIST training images")
    p.add_argument("--test-subset", type=int, default=2000, help="Fashion-MNIST test (validation) images")
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="fashion-mnist", help="a registered dataset (the smoke run: synthetic)")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run on synthetic data (not a verdict)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    p.add_argument("--work-dir", default=None, help="run folders (default: a temporary folder, removed after)")


def load(a: argparse.Namespace, **smoke):
    """``(train, test)`` datasets of the options. The smoke run: synthetic 16 x 16 images, 128 / 64 of them, 1 epoch,
    2 seeds, ``smoke`` on top (each applied where the script has that option)."""
    if a.smoke:
        for k, v in {"data": "synthetic", "subset": 128, "test_subset": 64, "epochs": 1, "seeds": 2, **smoke}.items():
            if hasattr(a, k):
                setattr(a, k, v)
    opts = {"num_classes": 10, "image_size": 16, "channels": 1} if a.data == "synthetic" else {}
    return (load_dataset(a.data, "train", subset=a.subset, seed=0, **opts),
            load_dataset(a.data, "test", subset=a.test_subset, seed=0, **opts))


def pooled(model: nn.Module) -> nn.Module:
    """The model behind a 2x average pooling of its input (28 x 28 -> 14 x 14: a quarter of the compute)."""
    return nn.Sequential(nn.AvgPool2d(2), model)


def fit(model: nn.Module, name: str, seed: int, a: argparse.Namespace, tr, te, work: Path) -> dict:
    """Train ``model`` (seeded by the caller) and return its final train / test loss and test accuracy."""
    opt = a.optimizer
    cfg = TrainConfig(model=name, epochs=a.epochs, batch_size=a.batch_size, optimizer=opt, lr=a.lr, momentum=0.9,
                      weight_decay=5e-4 if opt == "sgd" else 0.05, schedule="cosine", warmup_epochs=0.0,
                      label_smoothing=0.0, augment=False,
                      precision="fp32", seed=seed, threads=a.threads, out_dir=str(work / f"{name}-seed{seed}"),
                      overwrite=True, checkpoint=False, progress=False, log="none", eval_every=a.epochs)
    r = train(cfg, model, tr, te)
    return {"train_loss": r["final_train_loss"], "test_loss": r["final_test_loss"], "test_acc": r["final_test_acc"]}


def train_variants(a: argparse.Namespace, tr, te, variants: dict[str, str], build: Callable[[str], nn.Module],
                   name: str, wrap: Callable[[nn.Module], nn.Module] = lambda m: m) -> tuple[dict, dict]:
    """Per seed, each ``connection`` of ``variants`` (key -> slot value) built by ``build(connection)`` after
    ``torch.manual_seed(seed)`` (the same initial weights but for the connections), trained by :func:`fit` behind
    ``wrap``; returns ``({key: [fit result per seed]}, {key: parameter count})``."""
    res, params = {k: [] for k in variants}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        for seed in range(a.seeds):
            for key, connection in variants.items():
                torch.manual_seed(seed)
                m = build(connection)
                params[key] = sum(q.numel() for q in m.parameters())
                res[key].append(fit(wrap(m), f"{name}-{key}", seed, a, tr, te, work))
    return res, params
