"""Analysis columns for ``blockzoo compare --analyze erf``: a number per run, averaged per variant, in the leaderboard.

``erf``: the 20 % high-contribution area ratio (:mod:`blockzoo.analysis.erf`; of the input area, on the last
feature map) of each run's final checkpoint (``last.safetensors``), over the first :data:`ERF_IMAGES` images of the
compare's test set. :func:`add_analysis_columns` adds ``analysis`` to each variant of a compare's results
(``{"erf_area_20": [per seed], "erf_area_20_mean": m, "erf_area_20_std": s}``); :func:`leaderboard_cells` gives the
leaderboard cells.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blockzoo.checks import check_choice
from blockzoo.errors import ConfigError

__all__ = ["ANALYSES", "ERF_IMAGES", "check_analyses", "add_analysis_columns", "leaderboard_cells"]

ANALYSES = ("erf",)
ERF_IMAGES = 16


def check_analyses(names: Sequence[str]) -> list[str]:
    """The ``--analyze`` names, each one of :data:`ANALYSES` (else :class:`ConfigError`)."""
    return [check_choice(n, "--analyze", ANALYSES, owner="compare") for n in names]


def add_analysis_columns(results: dict[str, Any], names: Sequence[str], test_set: Any) -> None:
    """Compute the analyses ``names`` for every run of ``results`` (a :func:`blockzoo.report.compare.run_compare`
    results dict) and store them in each variant's ``analysis`` entry."""
    from blockzoo.analysis.erf import erf
    from blockzoo.data import Loader
    from blockzoo.report.stats import mean_std
    from blockzoo.train import load_model

    if "erf" not in check_analyses(names):
        return
    x, _ = next(iter(Loader(test_set, min(ERF_IMAGES, len(test_set)), train=False)))
    for variant in results["variants"]:
        ratios = []
        for run in variant["runs"]:
            path = Path(run["run_dir"]) / "last.safetensors"
            if not path.exists():
                raise ConfigError(f"--analyze erf reads each run's last.safetensors, and {path} is missing; train "
                                  f"with checkpoints (drop --no-checkpoint)")
            ratios.append(erf(load_model(path), x).areas[0.2]["ratio"])
        m, sd = mean_std(ratios)
        variant.setdefault("analysis", {}).update({"erf_area_20": ratios, "erf_area_20_mean": m,
                                                   "erf_area_20_std": sd})


def leaderboard_cells(variant: dict[str, Any]) -> dict[str, str]:
    """The leaderboard cells of a variant's analyses (none when it has none)."""
    a = variant.get("analysis") or {}
    if "erf_area_20_mean" not in a:
        return {}
    return {"ERF 20% area % (mean ± std)": f"{100 * a['erf_area_20_mean']:.2f} ± {100 * a['erf_area_20_std']:.2f}"}
