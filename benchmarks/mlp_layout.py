"""MetaFormer MLP layout on CPU: forward+backward time of ``mlp_layout="linear"`` (nn.Linear on NHWC) vs ``"conv"``.

    .venv/bin/python benchmarks/mlp_layout.py --models convnext_atto,inception_next_atto --threads 1

Batch 32, 32 px, ``stem="small"``, 10 classes; the two layouts run interleaved, the minimum of ``--reps`` runs is
reported (ms). The numbers quoted in :mod:`blockzoo.models.metaformer` come from this script. Prints a table; times
nothing in the test suite.
"""
from __future__ import annotations

import argparse
import time

import torch

from blockzoo.registry import create_model


def bench(name: str, batch: int = 32, img: int = 32, reps: int = 11) -> dict[str, float]:
    """Minimum forward+backward time (ms) of ``name`` (stem='small') with each MLP layout, runs interleaved."""
    models = {}
    for layout in ("linear", "conv"):
        torch.manual_seed(0)
        models[layout] = create_model(name, num_classes=10, stem="small", img_size=img, mlp_layout=layout)
    x = torch.randn(batch, 3, img, img)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(reps + 1):                     # the first round warms up and is dropped
        for layout, model in models.items():
            t = time.perf_counter()
            model(x).sum().backward()
            times[layout].append(time.perf_counter() - t)
    return {k: 1e3 * min(v[1:]) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="convnext_atto,inception_next_atto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| model | linear (ms) | conv (ms) |\n|---|---|---|")
    for name in args.models.split(","):
        t = bench(name, reps=args.reps)
        print(f"| {name} | {t['linear']:.0f} | {t['conv']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
