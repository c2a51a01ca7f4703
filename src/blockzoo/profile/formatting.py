"""Human-readable rendering of a :class:`~blockzoo.profile.core.ProfileReport` as a ``rich`` table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from blockzoo.profile.core import ProfileReport

__all__ = ["format_report", "human_count"]


def human_count(n: float, unit: str = "") -> str:
    """``4_089_184_256 -> '4.089 G'`` (SI prefixes, 4 significant digits)."""
    n = float(n)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.4g} {prefix}{unit}"
    return f"{n:.4g} {unit}".rstrip()


def _timing_line(t: dict, throughput: float | None) -> str:
    s = (f"median {t['median']:.3f} ms (IQR {t['iqr']:.3f}, min {t['min']:.3f}; {t['iters']} iters after "
         f"{t['warmup']} warm-up) | batch {t['batch_size']}, {t['dtype']}, channels_last={t['channels_last']}, "
         f"{t['threads']} threads, {t['device']}")
    if throughput is not None:
        s += f" | {throughput:,.1f} img/s"
    return s


def format_report(report: ProfileReport, *, max_ops: int = 12) -> Table:
    """A two-column ``rich`` table. MACs are labelled MACs; FLOPs (= 2 x MACs) are shown separately."""
    r = report
    table = Table(title=f"blockzoo profile: {r.model}", show_header=True, header_style="bold")
    table.add_column("quantity", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")

    size = "x".join(str(s) for s in r.input_size)
    table.add_row("input", f"{size} (per sample); device {r.device} ({r.device_name}); torch {r.torch_version}")
    table.add_row("params", f"{r.params:,} ({human_count(r.params)}), trainable {r.trainable_params:,}")
    table.add_row("MACs (per image)", f"{r.macs:,} = {human_count(r.macs, 'MACs')}  (what papers usually call FLOPs)")
    table.add_row("FLOPs (= 2 x MACs)", f"{r.flops:,} = {human_count(r.flops, 'FLOPs')}")
    if r.macs and r.mac_breakdown:
        for name, macs in r.mac_breakdown.items():
            table.add_row(f"  MACs {name}", f"{human_count(macs, 'MACs')} ({100.0 * macs / r.macs:.1f}%)")
    if r.latency_ms:
        table.add_row("forward latency", _timing_line(r.latency_ms, r.throughput_img_s))
    if r.train_step_ms:
        table.add_row("train step (fwd+bwd+SGD)", _timing_line(r.train_step_ms, r.train_throughput_img_s))
    if r.peak_memory_mb is not None:
        table.add_row("peak memory", f"{r.peak_memory_mb:,.1f} MB; {r.peak_memory_method}")
    if r.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in list(r.uncounted_ops.items())[:max_ops])
        table.add_row(Text("UNCOUNTED compute", style="bold red"),
                      Text(f"{ops}  -- MACs above exclude these ops", style="red"))
    else:
        table.add_row("uncounted compute", "none")
    if r.ignored_by_category:
        parts = [f"{cat}: {sum(ops.values())} calls ({len(ops)} ops)" for cat, ops in r.ignored_by_category.items()]
        table.add_row("ignored by convention", "; ".join(parts))
    elif r.ignored_ops:
        table.add_row("ignored by convention", f"{sum(r.ignored_ops.values())} calls ({len(r.ignored_ops)} ops)")
    table.add_row("counter", f"{r.counter}; {r.sdpa_convention}; {r.fft_convention}")
    return table
