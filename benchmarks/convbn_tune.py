"""Memory and time of one fine-tuning step, ConvBN Eval mode vs Tune mode (S069, Xiong et al., ICLR 2024).

    .venv/bin/python benchmarks/convbn_tune.py                   # resnet50, 64 px, batch 16, 2 threads
    .venv/bin/python benchmarks/convbn_tune.py --img 32 --batch 4 --rounds 1 --out-dir /tmp/x   # seconds

``--rounds`` interleaved rounds of ``blockzoo.profile.profile_model`` (SGD train step; its peak memory: live
tensors + the peak extra allocation of one step) on the same model switched with ``blockzoo.deploy.convbn_mode``
to ``eval`` (frozen BN statistics, BN kept as a module: the conv output is saved for the BN's backward) and to
``tune`` (BN folded into the conv weight on the fly). The paper's claim: Tune mode needs less memory and time
than Eval mode at the same function and gradients. Writes ``benchmarks/results/convbn_tune.{json,md}`` with the
command and the machine (``blockzoo.env.machine()``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from blockzoo.deploy import convbn_mode
from blockzoo.env import machine
from blockzoo.files import atomic_write_text
from blockzoo.profile import profile_model
from blockzoo.registry import create_model


def bench(name: str, img: int, batch: int, rounds: int, threads: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=img)
    res: dict[str, dict[str, list[float]]] = {m: {"step_ms": [], "peak_mb": []} for m in ("eval", "tune")}
    for _ in range(rounds):
        for mode in res:
            convbn_mode(model, mode)
            rep = profile_model(model, (3, img, img), batch_size=batch, train_batch_size=batch, latency=False,
                                threads=threads)
            res[mode]["step_ms"].append(rep.train_step_ms["median"])
            res[mode]["peak_mb"].append(rep.peak_memory_mb)
    return {m: {"step_ms_median": statistics.median(v["step_ms"]), "peak_mb_median": statistics.median(v["peak_mb"]),
                "step_ms": v["step_ms"], "peak_mb": v["peak_mb"]} for m, v in res.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="benchmarks/results")
    a = ap.parse_args(argv)
    r = bench(a.model, a.img, a.batch, a.rounds, a.threads)
    e, t = r["eval"], r["tune"]
    out = {"model": a.model, "img": a.img, "batch": a.batch, "rounds": a.rounds, "threads": a.threads, "results": r,
           "tune_vs_eval": {"memory": t["peak_mb_median"] / e["peak_mb_median"],
                            "time": t["step_ms_median"] / e["step_ms_median"]},
           "command": " ".join(["python", *sys.argv]), "machine": machine(a.threads)}
    d = Path(a.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "convbn_tune.json", json.dumps(out, indent=2, default=str))
    atomic_write_text(d / "convbn_tune.md", "\n".join([
        f"# ConvBN Eval vs Tune mode: one SGD fine-tuning step of {a.model} ({a.img} px, batch {a.batch}, "
        f"{a.threads} threads, median of {a.rounds} rounds)", "",
        "| mode | step (ms) | peak memory (MB) |", "|---|---|---|",
        f"| eval | {e['step_ms_median']:.1f} | {e['peak_mb_median']:.1f} |",
        f"| tune | {t['step_ms_median']:.1f} | {t['peak_mb_median']:.1f} |", "",
        f"Tune / Eval: memory {out['tune_vs_eval']['memory']:.3f}, time {out['tune_vs_eval']['time']:.3f}.", "",
        f"Command: `{out['command']}`", "", f"Machine: {out['machine']}", ""]))
    print(f"eval: {e['step_ms_median']:.1f} ms, {e['peak_mb_median']:.1f} MB; tune: {t['step_ms_median']:.1f} ms, "
          f"{t['peak_mb_median']:.1f} MB -> {d / 'convbn_tune.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
