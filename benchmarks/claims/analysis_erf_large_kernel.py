"""Claim run (S084, UniRepLKNet, after RepLKNet): a ConvNet whose token mixer is a large dilated re-parameterised
kernel has a larger effective receptive field than the same network with ConvNeXt's 7x7 depthwise conv (the papers'
ERF figures and "high-contribution area ratio" tables, measured on trained ImageNet models).

At CPU scale: the shared small skeleton ``convnext_atto_small`` with ``mixer=dwconv`` (7x7) and with
``mixer=dilated_reparam`` (UniRepLKNet's block, its default kernel), each trained per seed on the same
class-stratified Fashion-MNIST subset with the trainer's default recipe; then the ERF of stage 2 (stride 8;
``blockzoo.analysis.erf``: |d centre / d input| summed over the images and channels, area ratios on
``log10(E + 1) / max``, as the official analysis) over the first test images, each pasted at the centre of a 64 x 64
background canvas (so the ERF has room to spread beyond the 28-px digit frame; the models are fully convolutional).
Also recorded: the same numbers at initialisation (with the paper's layer-scale init 1e-6 every residual branch is
nearly silent there, so the ERF at init is mostly the skip path's). Verdict rule: :data:`RULE` on the per-seed
paired difference of the 20% area ratio (the lowest threshold of the papers' tables); the others are reported.

    python benchmarks/claims/analysis_erf_large_kernel.py            # the recorded budget (~2 min CPU idle, est.)
    python benchmarks/claims/analysis_erf_large_kernel.py --smoke    # a short run on tiny data
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from blockzoo import create_model, papers
from blockzoo.analysis.erf import THRESHOLDS, erf, plot_erf
from blockzoo.data import Loader, load_split
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest
from blockzoo.report.verdicts import write_verdict
from blockzoo.train import TrainConfig, train

RULE = ("reproduced if the mean paired difference (dilated_reparam - dwconv) of the 20% high-contribution area ratio "
        "is > 0 with a paired two-sided t-test p < 0.05 over the seeds; not reproduced if the mean difference is "
        "<= 0; inconclusive otherwise (larger on average but not significantly)")
MIXERS = ("dwconv", "dilated_reparam")
MODEL = "convnext_atto_small"


def canvas(loader: Loader, x: torch.Tensor, size: int) -> torch.Tensor:
    """The normalised images ``x`` pasted at the centre of a ``size`` x ``size`` background (pixel value 0)."""
    n, c, h, w = x.shape
    out = loader.normalize(torch.zeros(n, c, size, size, dtype=torch.uint8))
    top, left = (size - h) // 2, (size - w) // 2
    out[:, :, top:top + h, left:left + w] = x
    return out


def verdict_of(large: list[float], small: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` and the paired test."""
    test = paired_ttest(large, small)
    if test.mean_diff <= 0:
        return "not reproduced", test
    return ("reproduced" if test.p_value is not None and test.p_value < 0.05 else "inconclusive"), test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1000, help="training images (class-stratified Fashion-MNIST subset)")
    p.add_argument("--test", type=int, default=1000, help="test images (class-stratified; accuracy)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--erf-images", type=int, default=16, help="test images the ERF is summed over")
    p.add_argument("--canvas", type=int, default=64, help="side of the background canvas for the ERF")
    p.add_argument("--layer", default="stages.2", help="the stage whose central unit is measured")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run (tiny data, 2 seeds, 1 epoch)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    p.add_argument("--png", default=None, help="ERF heat maps of seed 0 (default: <out-dir>/analysis_erf_large_"
                                               "kernel.png)")
    a = p.parse_args(argv)
    if a.smoke:
        a.train, a.test, a.epochs, a.seeds, a.erf_images, a.canvas, a.batch_size = 64, 32, 1, 2, 2, 32, 32
    common = dict(data="fashion-mnist", batch_size=a.batch_size, progress=False, threads=a.threads, device="cpu",
                  precision="fp32", log="none", subset=a.train, test_subset=a.test)
    pick = TrainConfig(**common)
    train_set, test_set = load_split(pick, "train", subset_seed=0), load_split(pick, "test")
    loader = Loader(test_set, a.erf_images, train=False)
    x = canvas(loader, next(iter(loader))[0], a.canvas)
    res: dict[str, dict[str, list]] = {m: {"acc": [], "init": [], "trained": []} for m in MIXERS}
    maps = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.seeds):
            for mixer in MIXERS:
                torch.manual_seed(seed)
                model = create_model(MODEL, num_classes=10, in_chans=1, mixer=mixer)
                init = erf(model, x, a.layer)
                cfg = TrainConfig(model=MODEL, slots={"mixer": mixer}, epochs=a.epochs, seed=seed,
                                  eval_every=a.epochs, out_dir=str(Path(tmp) / f"{mixer}-s{seed}"), **common)
                r = train(cfg, model, train_set=train_set, test_set=test_set)
                trained = erf(model, x, a.layer)
                res[mixer]["acc"].append(r["final_test_acc"])
                res[mixer]["init"].append({str(t): v["ratio"] for t, v in init.areas.items()})
                res[mixer]["trained"].append({str(t): v["ratio"] for t, v in trained.areas.items()})
                if seed == 0:
                    maps += [(f"{mixer} init", init), (f"{mixer} trained", trained)]
                print(f"{mixer} seed {seed}: acc {r['final_test_acc']:.4f}, ERF area ratios trained "
                      f"{res[mixer]['trained'][-1]}", flush=True)
    primary = {m: [d["0.2"] for d in res[m]["trained"]] for m in MIXERS}
    verdict, test = verdict_of(primary["dilated_reparam"], primary["dwconv"])
    det = detectable_difference(test.std_diff, test.n)

    def ms(m: str, key: str, t: float) -> str:
        mu, sd = mean_std([d[str(t)] for d in res[m][key]])
        return f"{100 * mu:.2f} ± {100 * sd:.2f}%"

    summary = (f"trained, 20% area ratio: dilated_reparam {ms('dilated_reparam', 'trained', 0.2)} vs dwconv "
               f"{ms('dwconv', 'trained', 0.2)} of the {a.canvas}-px input ({a.seeds} seeds), paired difference "
               f"{100 * test.mean_diff:+.2f} ± {100 * test.std_diff:.2f} points, p = "
               f"{test.p_value if test.p_value is None else round(test.p_value, 3)}"
               + (f", detectable {100 * det:.2f} points" if det is not None else "")
               + f"; 99%: {ms('dilated_reparam', 'trained', 0.99)} vs {ms('dwconv', 'trained', 0.99)}; at init (20%) "
               f"{ms('dilated_reparam', 'init', 0.2)} vs {ms('dwconv', 'init', 0.2)}; test acc "
               + " vs ".join(f"{100 * mean_std(res[m]['acc'])[0]:.2f}%" for m in MIXERS))
    budget = (f"{MODEL} (mixer dwconv 7x7 vs dilated_reparam, paper layer-scale init 1e-6), Fashion-MNIST "
              f"{a.train} train / {a.test} test images (class-stratified, the same for every run), {a.epochs} "
              f"epochs, batch {a.batch_size}, trainer default recipe (SGD Nesterov one-cycle, label smoothing 0.1, "
              f"crop + flip), fp32 CPU, {a.seeds} seeds; ERF of {a.layer} over {a.erf_images} test images on a "
              f"{a.canvas}-px canvas, thresholds {', '.join(f'{int(100 * t)}%' for t in THRESHOLDS)}")
    path = write_verdict(
        "analysis_erf_large_kernel", paper=papers.UNIREPLKNET, block="mixer=dilated_reparam vs dwconv",
        claim="large-kernel ConvNets (UniRepLKNet's dilated re-parameterised kernels) have a larger effective "
              "receptive field than ConvNets with small (7x7) depthwise kernels",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"per_mixer": res, "paired_20pct": test.to_dict()}, out_dir=a.out_dir, threads=a.threads)
    png = Path(a.png) if a.png else path.with_suffix(".png")
    plot_erf(maps, png, title=f"ERF of {MODEL} {a.layer}, seed 0 (log10(E+1)/max; area ratios per threshold)")
    print(f"{verdict}: {summary}\nwritten {path}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
