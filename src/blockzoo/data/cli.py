"""The ``data`` commands of the command line: ``blockzoo data ...`` and ``python -m blockzoo.data ...`` (the same
parser, error handling and exit codes as :mod:`blockzoo.cli`).

* ``fetch NAME [--data-dir D]``: make the files available (apt / download / clear instructions), verify them, print
  the folder that holds them. If that fails: the error and what to do on stderr, exit status 2.
* ``list``: registered datasets and where their files are (or that they are absent).
* ``bench NAME``: loader throughput (img/s) with augmentation, on one thread by default.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from blockzoo.cli import int_at_least
from blockzoo.cli import main as cli_main

from .core import DataError
from .datasets import load_dataset
from .fetch import ensure_dataset, find_data_dir
from .loader import Loader
from .registry import DATASETS

__all__ = ["main", "add_commands", "bench_loader"]


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


def cmd_fetch(a: argparse.Namespace) -> int:
    names = [n for n in DATASETS if n != "synthetic"] if a.name == "all" else [a.name]
    if len(names) == 1:  # a failure is the command's error (one message, exit status 2)
        print(ensure_dataset(names[0], a.data_dir, verify=not a.no_verify, download=not a.no_download))
        return 0
    status = 0
    for name in names:  # `fetch all`: report each failure and go on with the others
        try:
            path = ensure_dataset(name, a.data_dir, verify=not a.no_verify, download=not a.no_download)
        except DataError as e:
            print(f"{name}: {e}", file=sys.stderr)
            status = 2
            continue
        print(f"{name}\t{path}")
    return status


def cmd_list(a: argparse.Namespace) -> int:
    for name, info in DATASETS.items():
        where = "generated in memory" if info.kind == "synthetic" else (find_data_dir(name) or "absent")
        print(f"{name:14s} {info.title:50s} {where}")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    r = bench_loader(a.name, batch_size=a.batch_size, epochs=a.epochs, augment=not a.no_augment, threads=a.threads,
                     data_dir=a.data_dir, device=a.device)
    print(f"{r['dataset']}: {r['images']} images in {r['seconds']:.2f} s = {r['img_per_s']:,.0f} img/s "
          f"(batch {r['batch_size']}, augment={r['augment']}, crop_padding={r['crop_padding']}, flip={r['flip']}, "
          f"threads={r['threads']}, device={r['device']}; load {r['load_seconds']:.2f} s)")
    return 0


def add_commands(p: argparse.ArgumentParser) -> None:
    """Add ``fetch`` / ``list`` / ``bench`` to ``p`` (each sets ``fn``, the function that runs it)."""
    positive_int = int_at_least(1)
    sub = p.add_subparsers(dest="data_cmd", metavar="COMMAND", required=True)
    f = sub.add_parser("fetch", help="make a dataset's files available and verify them; prints their folder")
    f.add_argument("name", choices=sorted(DATASETS) + ["all"], metavar="NAME",
                   help=f"{', '.join(sorted(DATASETS))} or all")
    f.add_argument("--data-dir", default=None, help="folder (or root holding <name>/) to use instead of the defaults")
    f.add_argument("--no-verify", action="store_true", help="skip the checksum/structure verification")
    f.add_argument("--no-download", action="store_true", help="never install or download, only look")
    f.set_defaults(fn=cmd_fetch)
    s = sub.add_parser("list", help="registered datasets and where their files are")
    s.set_defaults(fn=cmd_list)
    b = sub.add_parser("bench", help="loader throughput with augmentation (img/s)")
    b.add_argument("name", nargs="?", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    b.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default: 128)")
    b.add_argument("--epochs", type=positive_int, default=2, help="passes over the training set (default: 2)")
    b.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: 1)")
    b.add_argument("--no-augment", action="store_true", help="no random crop + flip")
    b.add_argument("--device", default="cpu", help="device the batches go to (default: cpu)")
    b.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    b.set_defaults(fn=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """``python -m blockzoo.data ARGS`` = ``blockzoo data ARGS``."""
    return cli_main(["data", *(sys.argv[1:] if argv is None else argv)])
