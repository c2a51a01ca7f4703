"""Generate ``docs/catalog.md`` from the registry (never hand-edited): every block with its paper, slot, cost at a
reference size and a usage example; every model with its slots and its parameter/MAC counts next to the paper's."""
from __future__ import annotations

from pathlib import Path

import torch

from blockzoo import registry as R

# reference input per slot: (channels, H, W) and extra constructor kwargs
REF = {"attn": (64, 56, 56), "mixer": (64, 56, 56), "norm": (64, 56, 56), "conv": (64, 56, 56), "head": (256, 7, 7)}


def _cost(name: str) -> tuple[str, str]:
    from blockzoo.profile import count_macs

    spec = R.get_block_spec(name)
    if spec.slot not in REF:
        return "0", "—"
    c, h, w = REF[spec.slot]
    kw = {"input_resolution": (h, w)} if spec.requires.fixed_resolution else {}
    try:
        m = R.create_block(name, c, **kw)
        p = sum(x.numel() for x in m.parameters())
        macs = count_macs(m, (c, h, w)).macs
        return f"{p:,}", f"{macs / 1e6:.2f}"
    except Exception as e:  # a block that cannot run at the reference size says so in the table
        return "—", f"n/a ({type(e).__name__})"


def _model_counts(name: str) -> tuple[int, float | None]:
    from blockzoo.profile import count_macs

    spec = R.get_model_spec(name)
    m = R.create_model(name)
    p = sum(x.numel() for x in m.parameters())
    macs = count_macs(m, spec.input_size).macs if p < 120e6 else None
    return p, macs


def _options(options: dict, skip: tuple = ()) -> str:
    """``name=default`` for every option (read from the constructor's signature by the registry)."""
    return ", ".join(f"`{k}={R._slot_repr(v) if callable(v) else repr(v)}`" for k, v in options.items()
                     if k not in skip) or "none"


def render() -> str:
    lines = ["# blockzoo catalogue", "",
             "Generated from the registry by `blockzoo docs` — do not edit by hand. Costs: parameters and MACs "
             "(multiply-accumulates; FLOPs = 2 x MACs) per image, counted with `blockzoo.profile.count_macs` at the "
             "reference input of each slot: attn / mixer / norm / conv at 64x56x56 (conv: 64 -> 64, stride 1), "
             "head at 256x7x7.", ""]
    lines += ["## Slots", "", "| slot | contract |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in R.list_slots().items()]
    for slot in R.list_slots():
        names = R.list_blocks(slot=slot)
        if not names:
            continue
        lines += ["", f"## `{slot}` blocks ({len(names)})", "",
                  "| block | paper | summary | params | MACs (M) |", "|---|---|---|---|---|"]
        for n in names:
            s = R.get_block_spec(n)
            paper = (f"{s.paper.id + ' ' if s.paper.id else ''}{s.paper.title} ({s.paper.venue} {s.paper.year})"
                     + (f" [arXiv:{s.paper.arxiv}](https://arxiv.org/abs/{s.paper.arxiv})" if s.paper.arxiv else "")
                     ) if s.paper else "—"
            p, macs = _cost(n)
            lines.append(f"| `{n}` | {paper} | {s.summary} | {p} | {macs} |")
        lines += ["", "Usage:", ""]
        for n in names:
            info = R.get_info(n)
            lines += [f"- `{n}`" + (f" — {info['notes']}" if info.get("notes") else ""), "",
                      f"  Options: {_options(R.block_options(n))}.", "", "  ```python",
                      *("  " + u for u in info["usage"].splitlines()), "  ```"]
    fams: dict[str, list[str]] = {}
    for n in R.list_models():
        fams.setdefault(R.get_model_spec(n).family, []).append(n)
    lines += ["", f"## Models ({len(R.list_models())})", "",
              "Params and MACs at the paper input (first model column) with the paper's default class count; "
              "'paper' columns are the numbers in the paper's table (empty where it gives none).", ""]
    for fam, names in sorted(fams.items()):
        spec0 = R.get_model_spec(names[0])
        lines += [f"### {fam}", ""]
        if spec0.paper:
            lines += [f"Paper: {spec0.paper.cite}", ""]
        lines += [f"Options of `{names[0]}` (its defaults; slots are in the table; depths, widths and the like that a "
                  f"variant fixes itself are not options): "
                  f"{_options(R.model_options(names[0]), skip=tuple(spec0.slots))}.", ""]
        lines += ["| model | input | slots | params | paper params | MACs (G) | paper MACs (G) |",
                  "|---|---|---|---|---|---|---|"]
        for n in names:
            s = R.get_model_spec(n)
            p, macs = _model_counts(n)
            slots = ", ".join(f"{k}={R._slot_repr(v)}" for k, v in s.slots.items())
            lines.append(f"| `{n}` | {'x'.join(map(str, s.input_size))} | {slots} | {p:,} | "
                         f"{'' if s.paper_params is None else f'{s.paper_params:,}'} | "
                         f"{'' if macs is None else f'{macs / 1e9:.3f}'} | "
                         f"{'' if s.paper_macs is None else f'{s.paper_macs / 1e9:.2f}'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_catalog(path: str | Path = "docs/catalog.md", check: bool = False) -> bool:
    """Write the catalogue; returns True if the file changed (with ``check``, nothing is written)."""
    torch.manual_seed(0)
    text = render()
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        return old != text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return old != text
