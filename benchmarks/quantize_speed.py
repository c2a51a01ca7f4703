"""INT8 post-training quantization (S007, ``blockzoo.deploy.quantize``) vs fp32 eager on this CPU: latency at batch 1
and 32 (median after warm-up), file size, agreement with float, quantize and compile time, per back end.

    python benchmarks/quantize_speed.py                 # -> benchmarks/results/quantize_speed.{json,md}
    python benchmarks/quantize_speed.py --smoke --out-dir /tmp/q

Models are random-initialised (speed and size do not depend on the weights; accuracy is the claim scripts' job:
``benchmarks/claims/quant_ptq.py``), in the deploy form (``reparameterize``) for both float and INT8. The float
baseline is eager PyTorch, as the issue's target states (fp32 ONNX Runtime is recorded too). Calibration: 2 random
batches. Threads: ``--threads`` (default 2) for torch and onnxruntime alike. Compile time (inductor) is the first
call of each batch size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import blockzoo
from blockzoo.deploy import reparameterize
from blockzoo.deploy.export import export_model
from blockzoo.deploy.quantization import QuantizedModel, latency_ms, quantize
from blockzoo.env import machine
from blockzoo.files import atomic_write_text

# (model, image size, back ends measured): the Fashion-MNIST-size models (28 px) first, then 224 px ImageNet-size
# ones; inductor last for the 224-px ResNet-50 / MobileNetV2 (its compile takes minutes on 2 loaded cores)
MODELS = [("resnet20", 28, "onnxruntime,inductor"), ("mobilenetv2_100_small", 28, "onnxruntime,inductor"),
          ("resnet50", 224, "onnxruntime"), ("mobilenetv2_100", 224, "onnxruntime"),
          ("convnext_atto", 224, "onnxruntime"), ("vit_tiny_patch16_224", 224, "onnxruntime"),
          ("lsnet_t", 224, "onnxruntime"), ("unireplknet_a", 224, "onnxruntime"),
          ("mobilenetv2_100", 224, "inductor"), ("resnet50", 224, "inductor")]
SMOKE = [("resnet20", 28, "onnxruntime")]


def _ort_fp32(model: torch.nn.Module, x: torch.Tensor, threads: int) -> tuple[QuantizedModel, int]:
    """The fp32 ONNX export run by onnxruntime (a QuantizedModel wrapper only runs the session)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.onnx")
        export_model(model, path, example=x[:2], check=False)
        data = Path(path).read_bytes()
    return QuantizedModel("onnxruntime", onnx_bytes=data, threads=threads), len(data)


def measure(name: str, size: int, backends: list[str], batches: list[int], iters: int, threads: int) -> dict:
    model = reparameterize(blockzoo.create_model(name, num_classes=10, in_chans=1 if size == 28 else 3)).eval()
    c = model.in_chans
    calib = [torch.randn(8, c, size, size) for _ in range(2)]
    xs = {b: torch.randn(b, c, size, size) for b in batches}
    with torch.no_grad():
        ref = model(xs[batches[-1]])
    fp32_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    row: dict = {"model": name, "img_size": size, "params": sum(p.numel() for p in model.parameters()),
                 "fp32_weight_bytes": fp32_bytes, "latency_ms": {}, "backends": {}}
    row["latency_ms"]["fp32_eager"] = {b: latency_ms(model, x, iters=iters)["median"] for b, x in xs.items()}
    ort32, ort32_bytes = _ort_fp32(model, xs[1], threads)
    row["fp32_onnx_bytes"] = ort32_bytes
    row["latency_ms"]["fp32_onnxruntime"] = {b: latency_ms(ort32, x, iters=iters)["median"] for b, x in xs.items()}
    for be in backends:
        t0 = time.perf_counter()
        q = quantize(model, calib, backend=be, threads=threads)
        rec: dict = {"quantize_s": time.perf_counter() - t0, "file_bytes": len(q.to_bytes())}
        compile_s = {}
        for b, x in xs.items():   # first call: compile for inductor
            t0 = time.perf_counter()
            q(x)
            compile_s[b] = time.perf_counter() - t0
        rec["first_call_s"] = compile_s
        rec["latency_ms"] = {b: latency_ms(q, x, iters=iters)["median"] for b, x in xs.items()}
        y = q(xs[batches[-1]])
        rec["rel_max_err"] = float((y - ref).abs().max() / ref.abs().max())
        rec["top1_agreement"] = float((y.argmax(1) == ref.argmax(1)).float().mean())
        rec["speedup_vs_eager"] = {b: row["latency_ms"]["fp32_eager"][b] / rec["latency_ms"][b] for b in xs}
        rec["size_ratio_vs_onnx_fp32"] = ort32_bytes / rec["file_bytes"]
        row["backends"][be] = rec
        print(f"{name} {be}: " + ", ".join(f"b{b} {rec['speedup_vs_eager'][b]:.2f}x" for b in xs) +
              f", size {rec['size_ratio_vs_onnx_fp32']:.2f}x smaller", flush=True)
    return row


def render(res: dict) -> str:
    lines = [f"# INT8 PTQ speed and size on this CPU ({res['machine']['cpu']}, {res['threads']} threads)", "",
             f"- command: `{res['command']}`", f"- machine: {res['machine']}", f"- load average at start: "
             f"{res['load_avg']}", f"- date: {res['date']}", "",
             *([f"**The machine was shared: load average {res['load_avg'][0]:.1f} on {os.cpu_count()} cores at the "
                "start, so the latencies (above all eager PyTorch's, whose OpenMP threads wait on each other when "
                "descheduled) are noisy; rerun on an idle machine for the real ratios.**", ""]
               if res["load_avg"][0] > 2 * res["threads"] else []),
             "Latency: median ms after warm-up. Speed-up = fp32 eager / INT8. Size: fp32 ONNX file / INT8 file "
             "(.onnx, or .pt2 for inductor: its JSON graph adds to the int8 weights).", "",
             "| model | px | backend | fp32 eager b1 / b32 | fp32 ORT b1 / b32 | INT8 b1 / b32 | speed-up b1 / b32 | "
             "size ratio | top-1 agree | quantize s | first call s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        e, o = r["latency_ms"]["fp32_eager"], r["latency_ms"]["fp32_onnxruntime"]
        for be, q in r["backends"].items():
            ks = list(q["latency_ms"])

            def pair(d: dict, fmt: str = "{:.1f}", ks: list = ks) -> str:
                return " / ".join(fmt.format(d[k]) for k in ks)
            lines.append(f"| {r['model']} | {r['img_size']} | {be} | {pair(e)} | {pair(o)} | {pair(q['latency_ms'])} "
                         f"| {pair(q['speedup_vs_eager'], '{:.2f}x')} | {q['size_ratio_vs_onnx_fp32']:.2f}x | "
                         f"{q['top1_agreement']:.2f} | {q['quantize_s']:.1f} | {pair(q['first_call_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one tiny model, batch 1 and 4, 2 iterations")
    ap.add_argument("--models", default=None, help="comma-separated model names (default: the issue's list)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="benchmarks/results")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models, batches, iters = (SMOKE, [1, 4], 2) if args.smoke else (MODELS, [1, 32], args.iters)
    if args.models:
        models = [m for m in MODELS if m[0] in args.models.split(",")]
    res = {"command": " ".join(["python", *sys.argv]), "machine": machine(args.threads), "threads": args.threads,
           "load_avg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": []}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, size, backends in models:
        res["rows"].append(measure(name, size, backends.split(","), batches, iters, args.threads))
        atomic_write_text(out / "quantize_speed.json", json.dumps(res, indent=1) + "\n")   # partial results kept
        atomic_write_text(out / "quantize_speed.md", render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
