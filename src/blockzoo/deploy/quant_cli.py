"""``blockzoo quantize CHECKPOINT --calib N --out DIR``: INT8 post-training quantization of a trained model
(:func:`blockzoo.deploy.quantize`, S007) and its report.

Writes into ``DIR``: the quantized model (``model_int8.onnx`` for the onnxruntime back end, ``model_int8.pt2`` -- a
saved ``torch.export`` program -- for inductor / pt2e; no pickles), ``quantize.json`` and ``quantize.md``: top-1
accuracy of the float (deploy form) and the INT8 model on the test split, their file sizes, and the latency of both
at batch 1 and 32 (median ms after warm-up, with the thread count). Calibration uses the first ``N`` training images
(a class-stratified
sample, seed 0, no augmentation), as the paper calibrates on a few hundred training images.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from blockzoo.files import atomic_write_text

__all__ = ["add_commands", "quantize_checkpoint", "cmd_quantize"]

LATENCY_BATCHES = (1, 32)


def _onnx_fp32_bytes(model: Any, example: Any) -> int:
    from blockzoo.deploy.export import export_model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "float.onnx")
        export_model(model, path, example=example, check=False)
        return os.path.getsize(path)


def quantize_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, calib: int = 256,
                        data: str | None = None, data_dir: str | None = None, backend: str | None = None,
                        per_channel: bool = True, threads: int | None = None, batch_size: int = 256,
                        test_subset: int | None = None, latency_iters: int = 10) -> dict[str, Any]:
    """Quantize the model in ``checkpoint`` (calibrated on ``calib`` training images of ``data``), write
    the model file and the report into ``out_dir`` and return the report (see the module docstring)."""
    import torch

    from blockzoo.checks import check_int
    from blockzoo.data import Loader, take_subset
    from blockzoo.deploy.quantization import DEFAULT_BACKEND, latency_ms, quantize
    from blockzoo.deploy.reparam import reparameterize
    from blockzoo.env import machine
    from blockzoo.train import evaluate, load_model, read_metadata
    from blockzoo.train.evaluation import checkpoint_split

    calib = check_int(calib, "calib", min_value=1, owner="quantize")
    backend = backend or DEFAULT_BACKEND
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", min_value=1, owner="quantize"))
    threads = torch.get_num_threads()
    checkpoint = os.fspath(checkpoint)
    spec = read_metadata(checkpoint)["model_spec"]
    model = reparameterize(load_model(checkpoint)).eval()
    data, train_set = checkpoint_split(checkpoint, "train", data, data_dir=data_dir)
    _, test_set = checkpoint_split(checkpoint, "test", data, data_dir=data_dir)
    if test_subset is not None:
        test_set = take_subset(test_set, check_int(test_subset, "test_subset", min_value=1, owner="quantize"))
    calib_batches = [x for x, _ in Loader(take_subset(train_set, calib), 32, train=False)]
    q = quantize(model, calib_batches, backend=backend, per_channel=per_channel, threads=threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = q.save(out / f"model_int8{q.suffix}")
    loader = Loader(test_set, batch_size, train=False)
    acc = {"fp32": evaluate(model, loader)["acc"], "int8": evaluate(q, loader)["acc"]}
    x = calib_batches[0][:1]
    lat = {kind: {b: latency_ms(m, x.expand(b, *x.shape[1:]).contiguous(), iters=latency_iters)["median"]
                  for b in LATENCY_BATCHES} for kind, m in (("fp32_eager", model), ("int8", q))}
    report = {
        "checkpoint": checkpoint, "model": spec["name"], "data": data, "test_images": len(test_set),
        "calib_images": q.info["calib_images"], "parity_rel_err": q.info["parity_rel_err"], "backend": backend,
        "per_channel": per_channel,
        "model_file": str(model_path), "acc": acc, "acc_drop": acc["fp32"] - acc["int8"],
        "bytes": {"fp32_onnx": _onnx_fp32_bytes(model, x), "int8": os.path.getsize(model_path)},
        "latency_ms": lat, "speedup": {b: lat["fp32_eager"][b] / lat["int8"][b] for b in LATENCY_BATCHES},
        "threads": threads, "machine": machine(threads),
    }
    atomic_write_text(out / "quantize.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "quantize.md", render_report(report))
    return report


def render_report(r: dict[str, Any]) -> str:
    """The report as Markdown."""
    b = r["bytes"]
    rows = [f"| latency batch {k} (ms, median) | {r['latency_ms']['fp32_eager'][k]:.2f} | "
            f"{r['latency_ms']['int8'][k]:.2f} | {r['speedup'][k]:.2f}x faster |" for k in LATENCY_BATCHES]
    return "\n".join([
        f"# INT8 quantization of {r['model']} ({r['backend']}, "
        f"{'per-channel' if r['per_channel'] else 'per-tensor'} weights)", "",
        f"- checkpoint: `{r['checkpoint']}`; calibration: {r['calib_images']} training images of {r['data']}",
        f"- parity with float on the first calibration batch: relative error {r['parity_rel_err']:.4f} "
        f"(quantize refuses above its max_rel_err)",
        f"- model file: `{r['model_file']}`", f"- machine: {r['machine']} ({r['threads']} threads)", "",
        "| | fp32 (deploy form, eager) | INT8 | |", "|---|---|---|---|",
        f"| top-1 on {r['test_images']} test images | {100 * r['acc']['fp32']:.2f}% | {100 * r['acc']['int8']:.2f}% "
        f"| {100 * r['acc_drop']:+.2f} points lost |",
        f"| size (ONNX fp32 / INT8 file) | {b['fp32_onnx'] / 1e6:.2f} MB | {b['int8'] / 1e6:.2f} MB | "
        f"{b['fp32_onnx'] / b['int8']:.2f}x smaller |", *rows]) + "\n"


def cmd_quantize(a: argparse.Namespace) -> int:
    from blockzoo.cli import _console, _esc, _print_json

    r = quantize_checkpoint(a.checkpoint, a.out, calib=a.calib, data=a.data, data_dir=a.data_dir, backend=a.backend,
                            per_channel=not a.per_tensor, threads=a.threads, test_subset=a.test_subset)
    if a.json:
        _print_json(r)
        return 0
    _console().print(f"{r['model']}: top-1 fp32 {100 * r['acc']['fp32']:.2f}% -> INT8 {100 * r['acc']['int8']:.2f}%, "
                     f"{r['bytes']['fp32_onnx'] / r['bytes']['int8']:.2f}x smaller, "
                     + ", ".join(f"batch {k} {r['speedup'][k]:.2f}x faster" for k in LATENCY_BATCHES)
                     + f"\n[bold]wrote[/] {_esc(r['model_file'])}, {_esc(str(Path(a.out) / 'quantize.md'))}")
    return 0


def add_commands(sub: Any) -> None:
    """Add the ``quantize`` command to ``sub`` (the ``blockzoo`` sub-parsers)."""
    from blockzoo.cli import int_at_least
    from blockzoo.deploy.quantization import BACKENDS, DEFAULT_BACKEND

    positive = int_at_least(1)
    s = sub.add_parser("quantize", help="INT8 post-training quantization of a checkpoint, with an accuracy, size and "
                       "latency report")
    s.add_argument("checkpoint", help="a checkpoint or weights file (last.safetensors, best.safetensors)")
    s.add_argument("--calib", type=positive, default=256, metavar="N",
                   help="calibration images: a class-stratified sample of N training images (default: 256)")
    s.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    s.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: as for train)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the model file and quantize.{json,md}")
    s.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"(default: {DEFAULT_BACKEND})")
    s.add_argument("--per-tensor", action="store_true", help="one weight scale per layer instead of per channel")
    s.add_argument("--threads", type=positive, default=None, help="CPU threads (default: torch's)")
    s.add_argument("--test-subset", type=positive, default=None, metavar="N", help="only the first N test images")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_quantize)
