"""Claim run (S084, UniRepLKNet, after RepLKNet): a ConvNet whose token mixer is a large dilated re-parameterised
kernel has a larger effective receptive field than the same network with ConvNeXt's 7x7 depthwise conv (the papers'
ERF figures and "high-contribution area ratio" tables, measured on trained ImageNet models).

At CPU scale: the shared small skeleton ``convnext_atto_small`` with ``mixer=dwconv`` (7x7) and with
``mixer=dilated_reparam`` (UniRepLKNet's block, its default kernel), each trained per seed on the same
class-stratified Fashion-MNIST subset by ``analysis_common.Recipe`` (the recipe of the ERF benchmark
``benchmarks/analysis_erf.py``); then the ERF of stage 2 (stride 8; ``blockzoo.analysis.erf``: |d centre / d input|
summed over the images and channels, area ratios on ``log10(E + 1) / max``, as the official analysis) over the first
test images, each pasted at the centre of a 64 x 64 background canvas. Also recorded: the same numbers at
initialisation (with the paper's layer-scale init 1e-6 every residual branch is nearly silent there, so the ERF at
init is mostly the skip path's). ``--from-benchmark benchmarks/results/analysis_erf/erf.json`` takes the per-seed
numbers of the benchmark's trained runs (the same models, not trained twice) instead of training. Verdict rule:
:data:`RULE` on the per-seed paired difference of the 20% area ratio (the lowest threshold of the papers' tables);
the others are reported; fixed before the run.

    python benchmarks/claims/analysis_erf_large_kernel.py            # trains both mixers at the recorded budget
    python benchmarks/claims/analysis_erf_large_kernel.py --from-benchmark benchmarks/results/analysis_erf/erf.json
    python benchmarks/claims/analysis_erf_large_kernel.py --smoke    # a short run on tiny data
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_common import SMOKE, Recipe, add_arguments  # noqa: E402

from blockzoo import papers  # noqa: E402
from blockzoo.analysis.erf import plot_erf  # noqa: E402
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

RULE = ("reproduced if the mean paired difference (dilated_reparam - dwconv) of the 20% high-contribution area ratio "
        "is > 0 with a paired two-sided t-test p < 0.05 over the seeds; not reproduced if the mean difference is "
        "<= 0; inconclusive otherwise (larger on average but not significantly)")
MIXERS = ("dwconv", "dilated_reparam")


def verdict_of(large: list[float], small: list[float]) -> tuple[str, object]:
    """The verdict by :data:`RULE` and the paired test."""
    test = paired_ttest(large, small)
    if test.mean_diff <= 0:
        return "not reproduced", test
    return ("reproduced" if test.p_value is not None and test.p_value < 0.05 else "inconclusive"), test


def from_benchmark(path: Path) -> tuple[dict[str, dict[str, list]], str, int]:
    """The per-mixer lists ``{"acc", "init", "trained"}``, the budget and the canvas of an ``erf.json``'s trained
    part."""
    tr = json.loads(path.read_text(encoding="utf-8"))["trained"]
    res = {m: {k: [r[k] for r in tr["mixers"][m]["per_seed"]] for k in ("acc", "init", "trained")} for m in MIXERS}
    return res, tr["meta"]["budget"] + f" (the trained runs of {path})", tr["meta"]["canvas"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, threads=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--from-benchmark", default=None, metavar="ERF_JSON",
                   help="decide from the trained runs recorded by benchmarks/analysis_erf.py instead of training")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run (tiny data, 2 seeds, 1 epoch)")
    p.add_argument("--out-dir", default=None, help="verdict folder (default benchmarks/results/claims)")
    p.add_argument("--png", default=None, help="ERF heat maps of seed 0 when training (default: <out-dir>/analysis_"
                                               "erf_large_kernel.png)")
    a = p.parse_args(argv)
    maps = []
    if a.from_benchmark:
        res, budget, canvas = from_benchmark(Path(a.from_benchmark))
    else:
        if a.smoke:
            vars(a).update(SMOKE, seeds=2)
        recipe = Recipe(a)
        res = {m: {"acc": [], "init": [], "trained": []} for m in MIXERS}
        for seed in range(a.seeds):
            for mixer in MIXERS:
                row, init, trained = recipe.run(mixer, seed)
                for key in res[mixer]:
                    res[mixer][key].append(row[key])
                if seed == 0:
                    maps += [(f"{mixer} init", init), (f"{mixer} trained", trained)]
        budget, canvas = recipe.budget("dwconv 7x7 vs dilated_reparam", a.seeds), a.canvas
    primary = {m: [d["0.2"] for d in res[m]["trained"]] for m in MIXERS}
    verdict, test = verdict_of(primary["dilated_reparam"], primary["dwconv"])
    det = detectable_difference(test.std_diff, test.n)

    def ms(m: str, key: str, t: float) -> str:
        mu, sd = mean_std([d[str(t)] for d in res[m][key]])
        return f"{100 * mu:.2f} ± {100 * sd:.2f}%"

    summary = (f"trained, 20% area ratio: dilated_reparam {ms('dilated_reparam', 'trained', 0.2)} vs dwconv "
               f"{ms('dwconv', 'trained', 0.2)} of the {canvas}-px input ({test.n} seeds), paired difference "
               f"{100 * test.mean_diff:+.2f} ± {100 * test.std_diff:.2f} points, p = "
               f"{test.p_value if test.p_value is None else round(test.p_value, 3)}"
               + (f", detectable {100 * det:.2f} points" if det is not None else "")
               + f"; 99%: {ms('dilated_reparam', 'trained', 0.99)} vs {ms('dwconv', 'trained', 0.99)}; at init (20%) "
               f"{ms('dilated_reparam', 'init', 0.2)} vs {ms('dwconv', 'init', 0.2)}; test acc "
               + ", ".join("{} {:.2f} ± {:.2f}%".format(m, *(100 * v for v in mean_std(res[m]["acc"])))
                           for m in reversed(MIXERS)))
    path = write_verdict(
        "analysis_erf_large_kernel", paper=papers.UNIREPLKNET, block="mixer=dilated_reparam vs dwconv",
        claim="large-kernel ConvNets (UniRepLKNet's dilated re-parameterised kernels) have a larger effective "
              "receptive field than ConvNets with small (7x7) depthwise kernels",
        verdict=verdict, summary=summary, budget=budget, rule=RULE,
        results={"per_mixer": res, "paired_20pct": test.to_dict()}, out_dir=a.out_dir, threads=a.threads)
    if maps:
        png = Path(a.png) if a.png else path.with_suffix(".png")
        plot_erf(maps, png, title=f"ERF of convnext_atto_small {a.layer}, seed 0 (log10(E+1)/max; area ratios per "
                                  "threshold)")
    print(f"{verdict}: {summary}\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
