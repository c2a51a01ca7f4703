"""The claims lab's verdicts: a paper's checkable claim, run at CPU scale by a script under ``benchmarks/claims/``,
and what came out of it.

One JSON file per claim run in ``benchmarks/results/claims/<name>.json`` (and a short Markdown rendering next to it),
written by :func:`write_verdict`; ``blockzoo claims --lab`` lists them next to the registry's structural claims
(:func:`load_verdicts`). A verdict is one of :data:`VERDICTS`; "not reproduced at this scale" is an honest,
complete result. Nothing here computes a verdict: the script decides it from its numbers, states the rule it used
(``rule``) and the budget it ran at (``budget``), and records the exact command and the machine.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from blockzoo.errors import ConfigError
from blockzoo.files import atomic_write_text

__all__ = ["VERDICTS", "DEFAULT_DIR", "write_verdict", "lab_dir", "load_verdicts"]

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
DEFAULT_DIR = Path("benchmarks") / "results" / "claims"   # where the scripts write (relative to the repository root)
_REQUIRED = ("name", "paper", "claim", "verdict", "summary", "budget", "rule", "command")


def write_verdict(name: str, *, paper: Any, claim: str, verdict: str, summary: str, budget: str, rule: str,
                  block: str | None = None, results: dict[str, Any] | None = None, out_dir: str | Path | None = None,
                  command: str | None = None, threads: int | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` and ``<name>.md`` (atomically) and return the JSON path.

    Args:
        name: file stem, e.g. ``"grad_noise_deep_mlp"``.
        paper: the paper's record in :mod:`blockzoo.papers` (e.g. ``papers.GRAD_NOISE``; stored as its dict).
        claim: the paper's claim in one sentence, as the paper makes it.
        verdict: one of :data:`VERDICTS`.
        summary: one line with the numbers (mean ± std over seeds, the difference and what it could detect).
        budget: what was trained: data, images, epochs, seeds, model, precision.
        rule: how the verdict follows from the numbers (e.g. "reproduced if the gap exceeds 2 std of the
            difference over seeds").
        block: the registered block / model / trainer option the claim is about.
        results: the raw numbers (per seed), JSON-serialisable.
        out_dir: default ``benchmarks/results/claims`` under the current directory.
        command: the command that produced it (default: this process's command line).
        threads: the CPU threads the runs used, where they set their own (default: torch's current count).
    """
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    from blockzoo.env import machine
    if dataclasses.is_dataclass(paper):
        paper = dataclasses.asdict(paper)
    rec = {"name": name, "paper": paper, "block": block, "claim": claim, "verdict": verdict, "summary": summary,
           "budget": budget, "rule": rule,
           "command": command or " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(threads),
           "results": results or {}}
    out = Path(out_dir) if out_dir is not None else DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    atomic_write_text(path, json.dumps(rec, indent=1, default=str) + "\n")
    title = f"{paper['title']} ({paper['year']})" if isinstance(paper, dict) else str(paper)
    md = (f"# Claim: {claim}\n\n- paper: {title}" + (f"; block: `{block}`" if block else "") +
          f"\n- **verdict: {verdict}**\n- {summary}\n- budget: {budget}\n- rule: {rule}\n"
          f"- command: `{rec['command']}`\n- machine: {rec['machine']}\n- date: {rec['date']}\n")
    atomic_write_text(out / f"{name}.md", md)
    return path


def lab_dir() -> Path:
    """The recorded verdicts: ``benchmarks/results/claims`` of the current directory, else of the checkout the
    package runs from (an editable install), else the current directory's (which may not exist)."""
    if DEFAULT_DIR.is_dir():
        return DEFAULT_DIR
    repo = Path(__file__).resolve().parents[3] / DEFAULT_DIR
    return repo if repo.is_dir() else DEFAULT_DIR


def load_verdicts(directory: str | Path | None = None, block: str | None = None) -> list[dict[str, Any]]:
    """Every verdict record in ``directory`` (default :func:`lab_dir`), sorted by name, only those about ``block``
    if given; a record missing a required field is an error naming the file."""
    d = Path(directory) if directory is not None else lab_dir()
    if not d.is_dir():
        return []
    recs = []
    for p in sorted(d.glob("*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        missing = [k for k in _REQUIRED if k not in rec]
        if missing or rec.get("verdict") not in VERDICTS:
            raise ConfigError(f"{p}: not a claims-lab verdict (missing {', '.join(missing) or 'a valid verdict'}); "
                              f"write it with blockzoo.report.verdicts.write_verdict")
        if block is None or rec.get("block") == block:
            recs.append(rec)
    return recs
