"""The self-contained HTML report of a compare: ``report.html`` in the compare folder.

One file that opens offline in any browser (no script, no external stylesheet, font or image: the plots are embedded
as base64 PNG): the leaderboard (mean ± std over seeds, the paired difference to the baseline and its t-test, as in
``leaderboard.md``), the paired statistics per variant, the accuracy / cost trade-off plot, the training curves of
every run, the budget, the exact command and the machine (:func:`blockzoo.env.machine`).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from blockzoo.files import atomic_write_text

__all__ = ["write_html_report", "render_html_report", "REPORT_FILE"]

REPORT_FILE = "report.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.baseline td { font-weight: 600; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(header: list[str], rows: list[list[Any]], *, row_class: list[str] | None = None, id: str = "") -> str:
    cls = row_class or [""] * len(rows)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f'<tr class="{_e(c)}">' + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>"
                   for r, c in zip(rows, cls))
    return f'<table id="{_e(id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(png: bytes, alt: str, id: str) -> str:
    return f'<img id="{_e(id)}" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _num(x: Any, fmt: str) -> str:
    return "n/a" if x is None or x != x else format(x, fmt)


def render_html_report(results: dict[str, Any], tradeoff_png: bytes | None, curves_png: bytes | None) -> str:
    """The report's HTML for a compare's ``results`` (what ``results.json`` holds) and its two plots as PNG bytes
    (``None``: that plot is absent, which the report says)."""
    from blockzoo.report.compare import leaderboard_rows

    b, mach, cfg = results["budget"], results["machine"], results["config"]
    rows = leaderboard_rows(results)
    base_label = results["variants"][0]["label"]
    leaderboard = _table(list(rows[0]), [list(r.values()) for r in rows], id="leaderboard",
                         row_class=["baseline" if r["variant"].endswith(" (baseline)") else "" for r in rows])
    stats = _table(
        ["variant", "pairs (seeds)", "mean Δ acc (pp)", "std Δ (pp)", "t", "two-sided p"],
        [[v["label"], v["vs_baseline"]["n"], _num(100 * v["vs_baseline"]["mean_diff"], "+.3f"),
          _num(100 * v["vs_baseline"]["std_diff"], ".3f"), _num(v["vs_baseline"]["t"], ".3f"),
          _num(v["vs_baseline"]["p_value"], ".4f")] for v in results["variants"] if v["label"] != base_label],
        id="paired")
    budget = _table(["setting", "value"], [
        ["model", results["model"]], ["data", results["data"]],
        ["training images", f"{results['train_images']} ({'subset' if b.get('subset') else 'full set'})"],
        ["test images", results["test_images"]], ["image size", "x".join(map(str, results["image_size"]))],
        ["epochs", b["epochs"]], ["seeds", ", ".join(map(str, b["seeds"]))],
        *([k.replace("_", " "), v] for k, v in b.items() if k not in ("data", "subset", "epochs", "seeds")),
        *([f"every variant: {k}", v] for k, v in {**cfg.get("model_kwargs", {}), **cfg.get("fixed", {})}.items()),
    ], id="budget")
    machine = _table(["item", "value"], [["CPU", mach.get("cpu")], ["torch threads", mach.get("threads")],
                                ["torch", mach.get("torch")], ["Python", mach.get("python")],
                                ["GPU", mach.get("cuda") or "none"]], id="machine")

    def figure(png: bytes | None, alt: str, id: str) -> str:
        return _img(png, alt, id) if png else f'<p class="note">{_e(alt)}: not available.</p>'

    title = f"blockzoo compare: {results['model']} on {results['data']}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">{_e(len(results["variants"]))} variants x {_e(len(b["seeds"]))} seeds, started '
        f'{_e(results.get("started", "?"))}, finished {_e(results.get("finished", "?"))}. Accuracy: final-epoch test '
        f'accuracy, mean ± sample std over seeds; Δ: paired difference to the baseline ({_e(base_label)}) over the '
        f'same seeds, p: two-sided paired t-test (weak with few seeds). MACs per image at the training resolution '
        f'(FLOPs = 2 x MACs); latency: median forward time in eval mode, fp32.</p>',
        "<h2>Leaderboard</h2>", leaderboard,
        "<h2>Paired statistics (vs the baseline)</h2>",
        stats if len(results["variants"]) > 1 else '<p class="note">only the baseline: nothing to pair.</p>',
        "<h2>Accuracy vs cost</h2>", figure(tradeoff_png, "trade-off plot: test accuracy vs MACs and latency",
                                            "tradeoff"),
        "<h2>Training curves</h2>", figure(curves_png, "training curves of every run", "curves"),
        "<h2>Budget</h2>", budget,
        "<h2>Command</h2>", f"<pre><code>{_e(cfg.get('command') or '(called from Python: no command)')}</code></pre>",
        "<h2>Machine</h2>", machine,
        "</body></html>", ""])


def write_html_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.html`` into the compare folder ``out`` (its ``tradeoff.png`` already written there; the
    curves are drawn from the runs under ``out/runs``) and return its path."""
    from blockzoo.report.plot import compare_runs, curves_figure, pyplot

    out = Path(out)
    tradeoff = out / "tradeoff.png"
    fig = curves_figure(compare_runs(results, out))
    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=90, format="png")
    finally:
        pyplot().close(fig)
    text = render_html_report(results, tradeoff.read_bytes() if tradeoff.is_file() else None, buf.getvalue())
    path = out / REPORT_FILE
    atomic_write_text(path, text)
    return path
