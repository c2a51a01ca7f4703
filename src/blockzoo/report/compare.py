"""``blockzoo compare``: train every variant x seed with the same budget and recipe, then write the leaderboard.

A *variant* is one assignment of slot values (``--vary attn=none,se,eca`` gives three; several ``--vary`` flags give
their Cartesian product). The first variant is the baseline. Every run uses the same training subset, test set, recipe
and seed list, so the per-seed accuracy differences to the baseline are *paired* samples; the leaderboard reports
their mean, std and a paired two-sided t-test p-value (small seed counts make these tests weak: read them as such).

Outputs in ``out_dir``: ``leaderboard.md``, ``leaderboard.csv``, ``results.json``, ``tradeoff.png`` (test accuracy
vs MACs and vs latency, error bars = std over seeds) and ``report.html`` (all of it in one self-contained page, with
the training curves: :mod:`blockzoo.report.html`), plus one run directory per variant x seed under ``runs/``
(the trainer's metrics.jsonl, result.json and checkpoints).

A run is reused only for the same result-changing configuration (:func:`blockzoo.train.result_config`: model, slot
values, model options, data, subset, epochs, recipe, seed, precision, ...): its folder is
``runs/<variant>/seed<k>-<config hash>`` (plus ``-<fingerprint>`` of an image folder's contents), so runs of another
budget or of a changed image folder live beside it and are never mixed into this leaderboard, and ``results.json``
records the hash of every run. An interrupted compare, started again with the same arguments, skips finished runs
and resumes the unfinished one from its last checkpoint; one with a changed budget trains its runs afresh. Where the
runs train (here, one after another, or as Ray tasks) is the executor's business (:mod:`blockzoo.report.executors`);
the rules above and the results do not depend on it.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blockzoo.env import machine
from blockzoo.errors import ConfigError
from blockzoo.files import atomic_write, atomic_write_text
from blockzoo.registry import create_model, get_model_spec, parse_slot_value
from blockzoo.report.executors import CompareRun, make_executor
from blockzoo.report.html import write_html_report
from blockzoo.report.stats import detectable_difference, mean_std, paired_ttest

__all__ = ["CompareConfig", "parse_vary", "expand_variants", "variant_label", "run_compare", "write_reports"]


@dataclass
class CompareConfig:
    model: str = "resnet20"
    vary: dict[str, list[str]] = field(default_factory=lambda: {"attn": ["none", "se", "eca", "coord", "scse"]})
    fixed: dict[str, str] = field(default_factory=dict)      # --set slot=value applied to every variant
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # --model-arg: non-slot constructor options
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/compare"
    train: dict[str, Any] = field(default_factory=dict)      # TrainConfig fields shared by every run
    latency_batch: int = 1
    command: str = ""
    executor: str = "local"                                   # where the runs train: blockzoo.report.executors
    ray_address: str | None = None                            # --executor ray: an existing cluster (default: local)
    workers: int = 1                                          # --executor ray: runs at once on a local Ray
    analyze: list[str] = field(default_factory=list)          # --analyze erf: columns of blockzoo.analysis.columns

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _split_top(s: str) -> list[str]:
    """Split on commas outside parentheses and brackets: ``se(reduction=8,gate=sigmoid),[none,none,eca]`` -> 2
    items (the second a per-stage value)."""
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_vary(items: list[str]) -> dict[str, list[str]]:
    """``["attn=none,se,eca"]`` -> ``{"attn": ["none", "se", "eca"]}``."""
    vary: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--vary expects SLOT=v1,v2,... (e.g. attn=none,se,eca), got {item!r}")
        slot, vals = item.split("=", 1)
        values = _split_top(vals)
        if not values:
            raise ConfigError(f"--vary {item!r} lists no values")
        vary[slot.strip()] = values
    return vary


def expand_variants(vary: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(vary)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(vary[k] for k in keys))]


def variant_label(v: dict[str, str]) -> str:
    return ",".join(f"{k}={val}" for k, val in v.items())


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s)


def _profile_variant(model_name: str, slots: dict[str, Any], in_chans: int, num_classes: int,
                     image_size: tuple[int, int], latency_batch: int, threads: int | None) -> dict[str, Any]:
    from blockzoo.profile import profile_model

    m = create_model(model_name, num_classes=num_classes, in_chans=in_chans, img_size=image_size, **slots)
    rep = profile_model(m, (in_chans, *image_size), batch_size=latency_batch, train_step=False, memory=False,
                  min_time_s=0.3, threads=threads, name=model_name)
    lat = rep.latency_ms or {}
    return {"params": rep.params, "macs": rep.macs, "latency_ms": lat.get("median"), "latency_iqr_ms": lat.get("iqr"),
            "latency_batch": latency_batch, "latency_threads": lat.get("threads"),
            "uncounted_ops": rep.uncounted_ops}


def run_compare(cfg: CompareConfig, *, console: Any = None,
                on_run_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the comparison and write the reports; returns the results dict (also results.json)."""
    from blockzoo.data import data_fingerprint, load_split
    from blockzoo.train import TrainConfig, config_hash

    spec = get_model_spec(cfg.model)
    for slot in list(cfg.vary) + list(cfg.fixed):
        if slot not in spec.slots:
            raise ConfigError(f"model {cfg.model!r} has no {slot!r} slot; its slots are: {', '.join(spec.slots)}")
    variants = expand_variants(cfg.vary)
    if not variants:
        raise ConfigError("nothing to compare: give at least one --vary SLOT=v1,v2")
    # Validate every variant's slot values before spending any training time.
    for v in variants:
        for val in {**cfg.fixed, **v}.values():
            parse_slot_value(val)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base_train = TrainConfig(model=cfg.model, **cfg.train)
    base_train.validate()
    if cfg.analyze:
        from blockzoo.analysis.columns import check_analyses
        check_analyses(cfg.analyze)
    executor = make_executor(cfg.executor, ray_address=cfg.ray_address, workers=cfg.workers,
                             threads=base_train.threads)
    # the same training subset (seed 0) and test subset for every variant and seed: paired runs
    train_set, test_set = load_split(base_train, "train", subset_seed=0), load_split(base_train, "test")
    in_chans, num_classes, image_size = train_set.in_chans, train_set.num_classes, tuple(train_set.image_size)

    results: dict[str, Any] = {
        # the runs (training and latency) use base_train.threads threads when set, not the process default
        "config": cfg.to_dict(), "machine": machine(base_train.threads), "model": cfg.model, "data": base_train.data,
        "train_images": len(train_set), "test_images": len(test_set), "image_size": list(image_size),
        "started": _dt.datetime.now().isoformat(timespec="seconds"), "variants": [],
    }
    profiles: dict[str, dict[str, Any]] = {}
    for v in variants:
        slots = {**cfg.model_kwargs, **cfg.fixed, **v}
        profiles[variant_label(v)] = _profile_variant(cfg.model, slots, in_chans, num_classes, image_size,
                                                      cfg.latency_batch, base_train.threads)
    # an image folder's contents are part of a run's identity: a changed folder trains new runs in new folders
    data_fp = data_fingerprint(base_train.data)
    grid = []
    # seed-major order: an interrupted compare still has every variant at the first seeds
    for seed in cfg.seeds:
        for v in variants:
            label = variant_label(v)
            tcfg = dataclasses.replace(base_train, slots={**cfg.fixed, **v}, model_kwargs=dict(cfg.model_kwargs),
                                       seed=seed)
            h = config_hash(tcfg)
            run_name = f"seed{seed}-{h}" + (f"-{data_fp[:8]}" if data_fp else "")
            tcfg.out_dir = str(out / "runs" / _safe(label) / run_name)
            grid.append(CompareRun(label, seed, tcfg, h, data_fp))
    done = executor.run(grid, train_set, test_set, console=console, on_run_end=on_run_end)
    runs: dict[str, dict[int, dict[str, Any]]] = {variant_label(v): {} for v in variants}
    for r in grid:
        runs[r.label][r.seed] = done[r.key]
    for v in variants:
        label = variant_label(v)
        rows = runs[label]
        accs = [float(rows[s]["final_test_acc"]) for s in cfg.seeds if s in rows]
        tta = [rows[s].get("final_tta_acc") for s in cfg.seeds if s in rows]
        times = [float(rows[s].get("train_time_s", float("nan"))) for s in cfg.seeds if s in rows]
        ips = [float(rows[s].get("img_per_s") or float("nan")) for s in cfg.seeds if s in rows]
        m, sd = mean_std(accs)
        results["variants"].append({
            "label": label, "slots": v, **profiles[label], "seeds": [s for s in cfg.seeds if s in rows],
            "runs": [{"seed": s, "config_hash": rows[s]["config_hash"], "run_dir": rows[s]["run_dir"]}
                     for s in cfg.seeds if s in rows],
            "test_acc": accs, "test_acc_mean": m, "test_acc_std": sd,
            "test_acc_min": min(accs) if accs else None, "test_acc_max": max(accs) if accs else None,
            "train_time_s_mean": mean_std(times)[0], "train_img_per_s_mean": mean_std(ips)[0],
            **({"tta_acc": tta, "tta_acc_mean": mean_std(tta)[0], "tta_acc_std": mean_std(tta)[1]}
               if tta and None not in tta else {}),
        })
    if cfg.analyze:   # --analyze erf: a number per run from its final checkpoint
        from blockzoo.analysis.columns import add_analysis_columns
        add_analysis_columns(results, cfg.analyze, test_set)
    base = results["variants"][0]
    for row in results["variants"]:
        a = {s: acc for s, acc in zip(row["seeds"], row["test_acc"])}
        b = {s: acc for s, acc in zip(base["seeds"], base["test_acc"])}
        common = [s for s in cfg.seeds if s in a and s in b]
        test = paired_ttest([a[s] for s in common], [b[s] for s in common])
        row["vs_baseline"] = test.to_dict()
    results["detectable_diff"] = _detectable(results["variants"][1:])
    results["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    results["budget"] = {k: getattr(base_train.resolved(), k) for k in (
        "data", "subset", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "label_smoothing",
        "precision", "channels_last", "augment", "test_subset", "img_size", "aa", "reprob", "mixup", "cutmix",
        "lookahead", "norm_lr_scale", "data_init", "test_time_aug", "grad_noise", "grad_noise_decay", "gradinit",
        "gradinit_lr", "distill", "teachers", "distill_temperature", "ferkd_threshold", "ferkd_smoothing")}
    results["budget"]["seeds"] = list(cfg.seeds)
    # what "auto" (or "amp") became on the machine(s) that trained the runs, as each result.json records it
    results["budget"]["precision_used"] = sorted({str(r.get("precision")) for per in runs.values()
                                                  for r in per.values() if r.get("precision")})
    write_reports(results, out)
    return results


def _precision_words(budget: dict[str, Any]) -> str:
    """The precision setting and, when it was symbolic (``auto``, ``amp``), what the runs used."""
    used = budget.get("precision_used") or []
    return budget["precision"] + (f" ({', '.join(used)})" if used and used != [budget["precision"]] else "")


def _detectable(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How large a difference to the baseline these seeds can detect: the pooled standard deviation of the paired
    differences over the non-baseline variants, and :func:`~blockzoo.report.stats.detectable_difference` (paired
    t-test, alpha 0.05, power 0.8) at the number of seeds. ``None`` with fewer than 2 seeds or no other variant."""
    done = [r["vs_baseline"] for r in rows if r["vs_baseline"]["n"] >= 2]
    if not done:
        return None
    n = min(v["n"] for v in done)
    sd = (sum(v["std_diff"] ** 2 for v in done) / len(done)) ** 0.5
    return {"seeds": n, "std_diff": sd, "diff": detectable_difference(sd, n), "alpha": 0.05, "power": 0.8}


def detectable_words(results: dict[str, Any]) -> str:
    """One sentence on the smallest difference the comparison can detect (or why it cannot say)."""
    d = results.get("detectable_diff")
    if not d:
        return ("With fewer than 2 seeds per variant no difference can be tested: use --seeds 3 or more to tell "
                "noise from an effect.")
    return (f"With {d['seeds']} seeds and a seed-to-seed spread of the paired differences of "
            f"{100 * d['std_diff']:.2f} pp, differences smaller than about {100 * d['diff']:.2f} pp cannot be told "
            f"from noise (paired t-test, alpha {d['alpha']}, power {d['power']}); more seeds shrink this as "
            f"1/sqrt(seeds).")


# ------------------------------------------------------------------------------------------------------- reports
def _fmt_pct(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.{nd}f}"


def leaderboard_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    from blockzoo.analysis.columns import leaderboard_cells

    rows = []
    base_label = results["variants"][0]["label"]
    for r in sorted(results["variants"], key=lambda r: -(r["test_acc_mean"] if r["test_acc_mean"] == r[
            "test_acc_mean"] else -1)):
        vb = r["vs_baseline"]
        rows.append({
            "variant": r["label"] + (" (baseline)" if r["label"] == base_label else ""),
            "params": r["params"], "MACs (M)": f"{r['macs'] / 1e6:.2f}",
            f"latency ms (bs{r['latency_batch']})": "n/a" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}",
            "train s/run": f"{r['train_time_s_mean']:.1f}", "train img/s": f"{r['train_img_per_s_mean']:.0f}",
            "test acc % (mean ± std)": f"{_fmt_pct(r['test_acc_mean'])} ± {_fmt_pct(r['test_acc_std'])}",
            **({"TTA acc % (mean ± std)": f"{_fmt_pct(r['tta_acc_mean'])} ± {_fmt_pct(r['tta_acc_std'])}"}
               if "tta_acc_mean" in r else {}),
            "min–max %": f"{_fmt_pct(r['test_acc_min'])}–{_fmt_pct(r['test_acc_max'])}",
            "n": len(r["test_acc"]),
            "Δ vs baseline (pp)": "—" if r["label"] == base_label else
            f"{100 * vb['mean_diff']:+.2f} ± {100 * vb['std_diff']:.2f}",
            "paired p": "—" if r["label"] == base_label or vb["p_value"] is None else f"{vb['p_value']:.3f}",
            **leaderboard_cells(r),
        })
    return rows


def write_reports(results: dict[str, Any], out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    rows = leaderboard_rows(results)
    table = io.StringIO()
    w = csv.DictWriter(table, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "leaderboard.csv", table.getvalue())
    b, mach = results["budget"], results["machine"]
    head = [
        f"# blockzoo compare: {results['model']} on {results['data']}",
        "",
        f"- Budget: {b['epochs']} epochs on {results['train_images']} training images "
        f"({'subset' if b['subset'] else 'full set'}), test on {results['test_images']} images, "
        f"{results['image_size'][0]}x{results['image_size'][1]} px; seeds {b['seeds']}.",
        f"- Recipe: {b['optimizer']} lr {b['lr']:g}, wd {b['weight_decay']:g}, {b['schedule']} schedule, "
        f"label smoothing {b['label_smoothing']}, batch {b['batch_size']}, precision {_precision_words(b)}, "
        f"channels_last {b['channels_last']}, augmentation {_augmentation_words(b)}{_technique_words(b)}.",
        f"- Machine: {mach['cpu']}, {mach['threads']} threads, torch {mach['torch']}"
        + (f", GPU {mach['cuda']}" if mach.get("cuda") else "") + ".",
        "- Accuracy: final-epoch test accuracy, mean ± sample std over seeds. Δ: paired difference to the baseline "
        "over the same seeds; p: two-sided paired t-test (weak with few seeds). " + detectable_words(results),
        "- MACs: multiply-accumulates per image at the training resolution (FLOPs = 2 x MACs), counted with "
        "blockzoo.profile (torch FlopCounterMode formulas). Latency: median forward time in eval mode, fp32, after "
        "warm-up. train s/run: training time per run, evaluation excluded.",
    ]
    fixed = {**results["config"].get("model_kwargs", {}), **results["config"].get("fixed", {})}
    if fixed:
        head.append("- Every variant also uses: " + ", ".join(f"{k}={v!r}" for k, v in fixed.items()) + ".")
    if results["config"].get("command"):
        head.append(f"- Command: `{results['config']['command']}`")
    head += ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    head += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    atomic_write_text(out / "leaderboard.md", "\n".join(head) + "\n")
    plot_tradeoff(results, out / "tradeoff.png")
    write_html_report(results, out)


def _augmentation_words(b: dict[str, Any]) -> str:
    """``crop+flip, RandAugment rand-m9-n2, MixUp 0.8`` ... for the recipe line (older results lack the new keys)."""
    words = ["crop+flip"] if b["augment"] else []
    if b.get("test_time_aug"):
        words.append(f"test-time augmentation level {b['test_time_aug']} (TTA column)")
    if b.get("aa"):
        words.append(f"RandAugment {b['aa']}")
    for key, name in (("reprob", "random erasing p"), ("mixup", "MixUp alpha"), ("cutmix", "CutMix alpha")):
        if b.get(key):
            words.append(f"{name} {b[key]:g}")
    return ", ".join(words) or "none"


def _technique_words(b: dict[str, Any]) -> str:
    """``, lookahead EMA, norm lr x64, data-dependent init`` (the fast recipe's extras), gradient noise, GradInit,
    distillation, or nothing."""
    words = [text for key, text in (("lookahead", "lookahead EMA"), ("data_init", "data-dependent init"))
             if b.get(key)]
    if b.get("norm_lr_scale", 1.0) != 1.0:
        words.append(f"norm lr x{b['norm_lr_scale']:g}")
    if b.get("grad_noise"):
        words.append(f"gradient noise eta {b['grad_noise']:g}, gamma {b.get('grad_noise_decay', 0.55):g}")
    if b.get("gradinit"):
        words.append(f"GradInit {b['gradinit']} iterations (meta lr {b.get('gradinit_lr', 1e-3):g})")
    if b.get("distill", "none") != "none":
        words.append(f"{b['distill']} distillation from {len(b.get('teachers') or [])} teacher(s), "
                     f"T {b.get('distill_temperature', 1.0):g}")
    return "".join(f", {w}" for w in words)


def plot_tradeoff(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = results["variants"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, key, xlabel in ((axes[0], "macs", "MACs per image (M)"), (axes[1], "latency_ms", "forward latency (ms)")):
        for r in vs:
            x = r[key] / 1e6 if key == "macs" else r[key]
            if x is None:
                continue
            ax.errorbar(x, 100 * r["test_acc_mean"], yerr=100 * r["test_acc_std"], fmt="o", capsize=4)
            ax.annotate(r["label"], (x, 100 * r["test_acc_mean"]), textcoords="offset points", xytext=(5, 5),
                        fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    b = results["budget"]
    fig.suptitle(f"{results['model']} on {results['data']}: {b['epochs']} epochs, {results['train_images']} images, "
                 f"{len(b['seeds'])} seeds (error bars: std)", fontsize=10)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
