"""``blockzoo analyze TOOL MODEL_OR_CHECKPOINT --out DIR``: the analysis bench from the command line.

TOOL is ``erf``, ``eigencam``, ``attention``, ``landscape``, ``linearscope`` or ``robustness``. MODEL_OR_CHECKPOINT is
a registered model name (built at initialisation; with ``--data`` for the dataset's classes and channels) or a
checkpoint / weights file (rebuilt from the file alone, as ``blockzoo eval`` does). Images: ``--images N`` of the test
split of ``--data``, else N standard-normal images of ``--input C,H,W`` (default: the model's input size: the
checkpoint's or the registered one). Each tool writes ``<tool>.json`` (the numbers) and its PNGs into ``--out``
(atomically) and prints what it wrote.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from blockzoo.errors import ConfigError

__all__ = ["TOOLS", "add_commands"]

TOOLS = ("erf", "eigencam", "attention", "landscape", "linearscope", "robustness")


def _input_shape(a: argparse.Namespace) -> tuple[int, int, int]:
    if a.input:
        try:
            shape = tuple(int(v) for v in a.input.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"--input must be C,H,W with positive integers, e.g. 1,28,28; got {a.input!r}")
        return shape  # type: ignore[return-value]
    if os.path.exists(a.target):
        from blockzoo.train import read_metadata
        spec = read_metadata(a.target)["model_spec"]
        if spec.get("img_size"):
            return (spec["in_chans"], *spec["img_size"])
        from blockzoo.registry import get_model_spec
        return (spec["in_chans"], *get_model_spec(spec["name"]).input_size[1:])
    from blockzoo.registry import get_model_spec
    return get_model_spec(a.target).input_size


def _batch(a: argparse.Namespace, n: int) -> tuple[Any, torch.Tensor, torch.Tensor | None, Any]:
    """``(dataset, images normalised, labels, loader)``: ``n`` test images of ``--data``, or random images."""
    if a.data:
        from blockzoo.data import Loader, load_dataset
        ds = load_dataset(a.data, "test", data_dir=a.data_dir, subset=n if n < 10 ** 9 else None, seed=a.seed)
        loader = Loader(ds, len(ds), train=False)
        x, y = next(iter(loader))
        return ds, x, y, loader
    gen = torch.Generator().manual_seed(a.seed)
    return None, torch.randn((n, *_input_shape(a)), generator=gen), None, None


def _need_data(a: argparse.Namespace) -> None:
    if not a.data:
        raise ConfigError(f"analyze {a.tool} needs labelled images: pass --data NAME (e.g. fashion-mnist)")


def run_analysis(a: argparse.Namespace) -> dict[str, Any]:
    """Run one tool for the parsed arguments; returns ``{"json": path, "pngs": [paths], "result": dict}``."""
    from blockzoo.analysis.common import load_target, save_json

    if a.tool in ("landscape", "robustness"):
        _need_data(a)
    n = a.images or {"robustness": 10 ** 9, "linearscope": 1, "landscape": 256}.get(a.tool, 16)
    ds, x, y, loader = _batch(a, n)
    # a model name without --data is built for the random images' channels
    model = load_target(a.target, data=ds, **({} if ds is not None or os.path.exists(a.target)
                                              else {"in_chans": x.shape[1]}))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    label = Path(a.target).name
    if a.tool == "erf":
        from blockzoo.analysis.erf import erf, plot_erf
        res = erf(model, x, a.layer, official=a.official)
        result = res.to_dict()
        pngs.append(plot_erf([(f"{label} {res.layer}", res)], out / "erf.png"))
    elif a.tool == "eigencam":
        from blockzoo.analysis.eigencam import eigencam, plot_eigencam
        layer, maps = eigencam(model, x, a.layer, center=a.center)
        shown = loader.denormalize(x) if loader is not None else (x - x.amin()) / (x.amax() - x.amin())
        result = {"layer": layer, "center": a.center, "maps": maps.tolist()}
        pngs.append(plot_eigencam(shown, maps, out / "eigencam.png", title=f"Eigen-CAM of {label} {layer}"))
    elif a.tool == "attention":
        from blockzoo.analysis.attention import attention_report, plot_attention_curves, plot_attention_maps
        from blockzoo.analysis.collapse import attention_maps
        result = attention_report(model, x, k=a.k)
        pngs.append(plot_attention_maps(attention_maps(model, x[:1]), out / "attention_maps.png", title=label))
        pngs.append(plot_attention_curves(result, out / "attention_curves.png", title=label))
    elif a.tool == "landscape":
        from blockzoo.analysis.landscape import loss_slice, plot_slice, smoothness_probe
        steps = [a.radius * (i / (a.points // 2)) for i in range(-(a.points // 2), a.points // 2 + 1)]
        result = loss_slice(model, x, y, steps, steps if a.dims == 2 else None, seed=a.seed)
        model.train()
        result["smoothness"] = smoothness_probe(model, x, y, [a.lr * m for m in (0.25, 0.5, 1.0, 2.0, 4.0)])
        model.eval()
        pngs.append(plot_slice(result, out / "landscape.png", title=f"loss slice of {label}"))
    elif a.tool == "linearscope":
        from blockzoo.analysis.linearscope import linear_interpreter, plot_rows
        interp = linear_interpreter(model, x[:1])
        result = {"error": interp.error, "output": interp.y.tolist(), "bias": interp.b.tolist(),
                  "input_shape": list(interp.input_shape), "label": None if y is None else int(y[0])}
        pngs.append(plot_rows(interp, out / "linearscope_rows.png", labels=None if ds is None else list(ds.classes),
                              title=f"rows of A(x) of {label}"))
    else:
        from blockzoo.analysis.robustness import robustness
        result = robustness(model, ds, severities=tuple(int(s) for s in a.severities.split(",")))
    result = {"tool": a.tool, "target": a.target, "data": a.data, "images": len(x), **result}
    path = save_json(result, out / f"{a.tool}.json")
    return {"json": path, "pngs": pngs, "result": result}


def _odd_points(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 3 or v % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd integer >= 3 (the slice is centred on the checkpoint), "
                                         f"got {s!r}")
    return v


def cmd_analyze(a: argparse.Namespace) -> int:
    res = run_analysis(a)
    files = [res["json"], *res["pngs"]]
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def add_commands(p: argparse.ArgumentParser) -> None:
    """Add the ``analyze`` arguments to ``p`` (the parser of ``blockzoo analyze``; sets ``fn``)."""
    from blockzoo.cli import int_at_least

    positive, odd = int_at_least(1), _odd_points
    p.add_argument("tool", choices=TOOLS, metavar="TOOL", help=", ".join(TOOLS))
    p.add_argument("target", metavar="MODEL_OR_CHECKPOINT",
                   help="a registered model name (at initialisation) or a checkpoint / weights file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <tool>.json and the PNGs")
    p.add_argument("--layer", default=None, help="feature_info name or index, or a module name (default: last stage)")
    p.add_argument("--data", default=None, help="dataset whose test images to use (default: random images)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    p.add_argument("--images", type=positive, default=None, help="number of images (default: 16; robustness: the whole "
                   "test split; linearscope: 1; landscape: 256)")
    p.add_argument("--input", default=None, metavar="C,H,W", help="random-image size (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="images, directions and noise (default: 0)")
    p.add_argument("--official", action="store_true", help="erf: the RepLKNet scripts' ReLU variant")
    p.add_argument("--center", action="store_true", help="eigencam: centre the activations (pytorch-grad-cam)")
    p.add_argument("--k", type=positive, default=1, help="attention: similarity of layers l and l+k (default: 1)")
    p.add_argument("--dims", type=int, choices=(1, 2), default=1, help="landscape: 1-D or 2-D slice (default: 1)")
    p.add_argument("--points", type=odd, default=21, help="landscape: odd number of points per axis (default: 21)")
    p.add_argument("--radius", type=float, default=1.0, help="landscape: slice half-width (default: 1.0)")
    p.add_argument("--lr", type=float, default=0.1, help="landscape: learning rate the probe steps scale (0.1)")
    p.add_argument("--severities", default="1,3,5", help="robustness: severities 1..5 (default: 1,3,5)")
    p.set_defaults(fn=cmd_analyze)
