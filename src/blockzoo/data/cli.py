"""Command line of :mod:`blockzoo.data` (``python -m blockzoo.data ...``; ``blockzoo data ...`` may delegate to
:func:`main`).

* ``fetch NAME [--data-dir D]``: make the files available (apt / download / clear instructions), verify them, print
  the folder that holds them. Exit status 1 with the error message on stderr if that fails.
* ``list``: registered datasets and where their files are (or that they are absent).
* ``bench NAME``: loader throughput (img/s) with augmentation, on one thread by default.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .core import DataError
from .datasets import load_dataset
from .fetch import ensure_dataset, find_data_dir
from .loader import Loader
from .registry import DATASETS

__all__ = ["main", "build_parser", "bench_loader"]


def bench_loader(name: str, *, batch_size: int = 128, epochs: int = 2, augment: bool = True, threads: int | None = 1,
                 data_dir: str | None = None, device: str = "cpu", **kw) -> dict:
    """Measure :class:`Loader` throughput on the train split; returns a dict with ``img_per_s`` and details."""
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ds = load_dataset(name, "train", data_dir=data_dir, **kw)
    t_load = time.perf_counter() - t0
    loader = Loader(ds, batch_size, train=True, augment=augment, device=device)
    for _ in loader:  # warm-up pass (moves data to the device, first-call overheads)
        break
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, _y in loader:
            n += x.shape[0]
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return dict(dataset=ds.name, n=len(ds), images=n, seconds=dt, img_per_s=n / dt, load_seconds=t_load,
                batch_size=batch_size, augment=augment, threads=torch.get_num_threads(), device=device,
                crop_padding=loader.crop_padding, flip=loader.flip)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m blockzoo.data", description="blockzoo datasets")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="make a dataset's files available and verify them; prints their folder")
    f.add_argument("name", choices=sorted(DATASETS) + ["all"], metavar="NAME")
    f.add_argument("--data-dir", default=None, help="folder (or root holding <name>/) to use instead of the defaults")
    f.add_argument("--no-verify", action="store_true", help="skip the checksum/structure verification")
    f.add_argument("--no-download", action="store_true", help="never install or download, only look")
    sub.add_parser("list", help="registered datasets and where their files are")
    b = sub.add_parser("bench", help="loader throughput with augmentation (img/s)")
    b.add_argument("name", nargs="?", default="fashion-mnist")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--epochs", type=int, default=2)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--no-augment", action="store_true")
    b.add_argument("--device", default="cpu")
    b.add_argument("--data-dir", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "fetch":
            names = [n for n in DATASETS if n != "synthetic"] if args.name == "all" else [args.name]
            status = 0
            for name in names:
                try:
                    path = ensure_dataset(name, args.data_dir, verify=not args.no_verify,
                                          download=not args.no_download)
                except DataError as e:
                    if args.name != "all":
                        raise
                    print(f"{name}: {e}", file=sys.stderr)
                    status = 1
                    continue
                print(path if len(names) == 1 else f"{name}\t{path}")
            return status
        if args.cmd == "list":
            for name, info in DATASETS.items():
                where = "generated in memory" if info.kind == "synthetic" else (find_data_dir(name) or "absent")
                print(f"{name:14s} {info.title:50s} {where}")
            return 0
        if args.cmd == "bench":
            r = bench_loader(args.name, batch_size=args.batch_size, epochs=args.epochs, augment=not args.no_augment,
                             threads=args.threads, data_dir=args.data_dir, device=args.device)
            print(f"{r['dataset']}: {r['images']} images in {r['seconds']:.2f} s = {r['img_per_s']:,.0f} img/s "
                  f"(batch {r['batch_size']}, augment={r['augment']}, crop_padding={r['crop_padding']}, "
                  f"flip={r['flip']}, threads={r['threads']}, device={r['device']}; load {r['load_seconds']:.2f} s)")
            return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2
