"""Shared by the trained-ERF runs: ``benchmarks/analysis_erf.py`` (every ConvNet mixer of the shared skeleton) and
the claim run ``benchmarks/claims/analysis_erf_large_kernel.py`` (dwconv vs dilated_reparam, which can also take its
numbers from the benchmark's ``erf.json``): one training recipe and one ERF measurement, so both report the same
models.

Per (mixer, seed): ``convnext_atto_small`` with :data:`SKELETON`'s depths and widths and
the mixer, trained by ``blockzoo.train.train`` on a class-stratified Fashion-MNIST subset (the same images for every
run) with AdamW (:data:`OPTIMIZER`: ConvNeXt's own optimizer family; the trainer's other defaults: one-cycle decay,
warm-up, label smoothing 0.1, crop + flip); then ``blockzoo.analysis.erf`` of a stage over the first test images,
each pasted at the centre of a square background canvas (the models are fully convolutional, so the ERF has room to
spread beyond the 28-px digit frame), at initialisation and trained.
"""
from __future__ import annotations

import tempfile
from typing import Any

import torch

from blockzoo import create_model
from blockzoo.analysis.erf import THRESHOLDS, ErfResult, erf
from blockzoo.data import Loader, load_split
from blockzoo.report.stats import mean_std
from blockzoo.train import TrainConfig, train

MODEL = "convnext_atto_small"
# A cheaper variant of the registered one (depths 2/2/6/2, dims 40/80/160/320): the eight mixers' training costs
# 0.6x (inception_dw) to 5x (ffnified) dwconv's here, so the full variant would not fit the benchmark's budget.
SKELETON: dict[str, Any] = {"depths": (1, 1, 3, 1), "dims": (24, 48, 96, 192)}
OPTIMIZER = "adamw"
DEFAULTS = {"train": 2000, "test": 1000, "epochs": 3, "batch_size": 64, "erf_images": 16, "canvas": 64,
            "layer": "stages.2"}
SMOKE = {"train": 64, "test": 32, "epochs": 1, "batch_size": 32, "erf_images": 2, "canvas": 32}


def add_arguments(p: Any, threads: int) -> None:
    """The recipe's command-line options (defaults: :data:`DEFAULTS`) on the argparse parser ``p``."""
    d = DEFAULTS
    p.add_argument("--train", type=int, default=d["train"], help="training images (class-stratified Fashion-MNIST)")
    p.add_argument("--test", type=int, default=d["test"], help="test images (class-stratified; accuracy)")
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--erf-images", type=int, default=d["erf_images"], help="test images the ERF is summed over")
    p.add_argument("--canvas", type=int, default=d["canvas"], help="side of the background canvas for the ERF")
    p.add_argument("--layer", default=d["layer"], help="the stage whose central unit is measured")
    p.add_argument("--threads", type=int, default=threads)


def canvas(loader: Loader, x: torch.Tensor, size: int) -> torch.Tensor:
    """The normalised images ``x`` pasted at the centre of a ``size`` x ``size`` background (pixel value 0)."""
    n, c, h, w = x.shape
    out = loader.normalize(torch.zeros(n, c, size, size, dtype=torch.uint8))
    top, left = (size - h) // 2, (size - w) // 2
    out[:, :, top:top + h, left:left + w] = x
    return out


def areas(res: ErfResult) -> dict[str, float]:
    return {str(t): v["ratio"] for t, v in res.areas.items()}


class Recipe:
    """The data (loaded once) and the training options of ``a`` (an argparse namespace of :func:`add_arguments`)."""

    def __init__(self, a: Any) -> None:
        self.a = a
        self.common = dict(data="fashion-mnist", batch_size=a.batch_size, progress=False, threads=a.threads,
                           device="cpu", precision="fp32", log="none", subset=a.train, test_subset=a.test,
                           optimizer=OPTIMIZER, checkpoint=False)
        pick = TrainConfig(**self.common)
        self.train_set, self.test_set = load_split(pick, "train", subset_seed=0), load_split(pick, "test")
        loader = Loader(self.test_set, a.erf_images, train=False)
        self.images = canvas(loader, next(iter(loader))[0], a.canvas)

    def run(self, mixer: str, seed: int) -> tuple[dict[str, Any], ErfResult, ErfResult]:
        """Train one model; returns ``({"acc", "init", "trained"}, init ERF, trained ERF)``."""
        a = self.a
        torch.manual_seed(seed)
        model = create_model(MODEL, num_classes=10, in_chans=1, mixer=mixer, **SKELETON)
        init = erf(model, self.images, a.layer)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(model=MODEL, slots={"mixer": mixer}, model_kwargs=dict(SKELETON), epochs=a.epochs,
                              seed=seed, eval_every=a.epochs, out_dir=tmp, **self.common)
            acc = float(train(cfg, model, train_set=self.train_set, test_set=self.test_set)["final_test_acc"])
        trained = erf(model, self.images, a.layer)
        print(f"{mixer} seed {seed}: test acc {acc:.4f}, trained ERF area ratios {areas(trained)}", flush=True)
        return {"acc": acc, "init": areas(init), "trained": areas(trained)}, init, trained

    def budget(self, mixers: str, seeds: int) -> str:
        a = self.a
        shape = ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in SKELETON.items())
        return (f"{MODEL} ({shape}; mixer {mixers}, paper layer-scale init 1e-6), "
                f"Fashion-MNIST {a.train} train / {a.test} test images (class-stratified, the same for every run), "
                f"{a.epochs} epochs, batch {a.batch_size}, AdamW (lr 2e-3, wd 0.05) one-cycle with warm-up, label "
                f"smoothing 0.1, crop + flip, fp32 CPU, {seeds} seeds; ERF of {a.layer} over {a.erf_images} test "
                f"images on a {a.canvas}-px canvas, thresholds {', '.join(f'{int(100 * t)}%' for t in THRESHOLDS)}")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed runs of one mixer -> mean ± std of the test accuracy and of each area ratio, init and trained."""
    return {"acc": mean_std([r["acc"] for r in runs]),
            **{key: {str(t): mean_std([r[key][str(t)] for r in runs]) for t in THRESHOLDS}
               for key in ("init", "trained")}}
