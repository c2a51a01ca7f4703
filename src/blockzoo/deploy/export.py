"""Export a model to ONNX or to a ``torch.export`` program, with a parity check of the written file against eager.

``export_model(model, "m.onnx")`` writes the file atomically (temporary file in the same folder, then
``os.replace``) and, with ``check=True``, loads the written artefact back (onnxruntime for ONNX,
``torch.export.load`` for ``torch-export``), runs it on the example and on a second batch size and compares with
the eager model.

ONNX uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it needs only ``onnx``
(the ``export`` extra), while the dynamo exporter needs ``onnxscript`` as well, and it exports every registered
model. Its dynamic axis is the batch; ``torch-export`` programs are dynamic in batch, height and width
(``Dim.DYNAMIC``: the export fails rather than silently fixing a size).

``deploy=True`` writes the deploy form (re-parameterized, BN folded) and ``latency=True`` times eager, deploy form
and the written file (``blockzoo export CHECKPOINT --deploy`` does both); a quantized model is written by
``blockzoo quantize`` (:meth:`blockzoo.deploy.quantization.QuantizedModel.save`, with its own parity check).
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from blockzoo.checks import check_choice, check_int
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.files import atomic_write

__all__ = ["EXPORT_FORMATS", "export_model"]

EXPORT_FORMATS = ("onnx", "torch-export")
ONNX_OPSET = 17                      # LayerNorm is one op from opset 17 on
_EXTRA = "pip install 'blockzoo[export]'"


def _default_example(model: nn.Module) -> torch.Tensor:
    """A batch of 2 at the model's registered input size (its own ``in_chans``), on the model's device."""
    from blockzoo.registry import get_model_spec, is_model

    backbone = getattr(model, "model", model)   # create_model(..., features_only=True) wraps the backbone
    name = getattr(model, "model_name", None)
    if not isinstance(name, str) or not is_model(name):
        raise ConfigError(f"export_model cannot tell the input size of a {type(model).__name__} that was not built by "
                          f"blockzoo.create_model; pass example=torch.randn(2, C, H, W)")
    c, h, w = get_model_spec(name).input_size
    c = getattr(backbone, "in_chans", c)
    p = next(model.parameters(), None)
    return torch.randn(2, c, h, w, device=p.device if p is not None else "cpu",
                       dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)


def _outputs(y: Any) -> list[torch.Tensor]:
    """The model's output as a flat list of tensors (a tensor, or a list/tuple of them as features_only gives)."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in y):
        return list(y)
    raise ConfigError(f"export_model exports models whose forward returns a tensor or a list of tensors, got "
                      f"{type(y).__name__}")


def _require_onnx(check: bool) -> None:
    for mod in ("onnx", "onnxruntime") if check else ("onnx",):
        try:
            __import__(mod)
        except ImportError:
            raise ConfigError(f"ONNX export needs the {mod!r} package, which is not installed; install it with "
                              f"{_EXTRA}") from None


def _write_onnx(model: nn.Module, example: torch.Tensor, n_out: int, dynamic: bool) -> Callable[[str], None]:
    outputs = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    axes = {k: {0: "batch"} for k in ["input", *outputs]} if dynamic else None

    def write(tmp: str) -> None:
        # the exporter's notes on constant folding and on being the legacy exporter (chosen here: see the module doc)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant folding")
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=ONNX_OPSET, input_names=["input"],
                              output_names=outputs, dynamic_axes=axes)
    return write


def _onnx_runner(path: str) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()   # torch's thread count, so that latencies compare like with like
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda x: [torch.from_numpy(y) for y in session.run(None, {"input": x.detach().cpu().numpy()})]


def _program_runner(path: str) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    module = torch.export.load(path).module()
    return lambda x: _outputs(module(x))


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor], rtol: float, atol: float) -> tuple[float, bool]:
    """(largest absolute difference, every output within ``atol + rtol * max|eager output|``); a missing output or a
    shape mismatch is (inf, False). The tolerance scales with each output's magnitude, not entry by entry: float32
    rounding in a deep network at initialisation (logits in the thousands) is relative to the largest values."""
    if len(expected) != len(got) or any(e.shape != g.shape for e, g in zip(expected, got)):
        return float("inf"), False
    diff, ok = 0.0, True
    for e, g in zip(expected, got):
        e, g = e.detach().float().cpu(), g.detach().float().cpu()
        if e.numel():
            d = (e - g).abs().max().item()
            if not math.isfinite(d):   # NaN or inf where eager has none (or both inf)
                return float("inf"), False
            diff, ok = max(diff, d), ok and d <= atol + rtol * e.abs().max().item()
    return diff, ok


def _save_program(program: torch.export.ExportedProgram, tmp: str) -> None:
    with open(tmp, "wb") as f:  # a file object: torch.export.save warns about a path not ending in .pt2
        torch.export.save(program, f)


def _export_program(model: nn.Module, example: torch.Tensor, dynamic: bool) -> torch.export.ExportedProgram:
    from torch.export import Dim

    shapes = ({0: Dim.DYNAMIC, **({2: Dim.DYNAMIC, 3: Dim.DYNAMIC} if example.ndim == 4 else {})},) if dynamic else None
    return torch.export.export(model, (example,), dynamic_shapes=shapes)


def _deploy_form(model: nn.Module) -> nn.Module:
    from blockzoo.deploy.reparam import reparameterize

    return reparameterize(model).eval()


def _latencies(runs: dict[str, Callable[[torch.Tensor], Any]], example: torch.Tensor, dynamic: bool,
               iters: int) -> dict[str, dict[int, float]]:
    """Median ms of each runner at batch 1 (when ``dynamic``) and at the example's batch size."""
    from blockzoo.deploy.quantization import latency_ms

    xs = {len(example): example, **({1: example[:1]} if dynamic else {})}
    return {k: {b: latency_ms(run, xs[b], iters=iters)["median"] for b in sorted(xs)} for k, run in runs.items()}


def export_model(model: nn.Module, path: str | os.PathLike, *, format: str = "onnx",
                 example: torch.Tensor | None = None, dynamic: bool = True, check: bool = True,
                 rtol: float = 1e-3, atol: float = 1e-4, deploy: bool = False, latency: bool = False,
                 latency_iters: int = 10) -> dict[str, Any]:
    """Export ``model`` (in eval mode; its mode is restored afterwards) to ``path`` as ``format`` ("onnx" or
    "torch-export", a ``.pt2`` program) and return ``{"format", "path", "max_abs_diff", "rtol", "atol", "ok"}``.

    ``example`` (default: a batch of 2 random images at the model's registered input size) is the input the export
    traces. ``dynamic=True`` makes the batch dimension dynamic (and, for ``torch-export``, height and width too).
    With ``check=True`` the written file is loaded and run on the example and, when dynamic, on a batch one larger;
    ``max_abs_diff`` is the largest difference to eager and ``ok`` whether it is within ``atol + rtol *
    max|output|`` for every output. Without ``check``, ``max_abs_diff`` and ``ok`` are ``None``. ONNX needs
    ``pip install 'blockzoo[export]'`` (a :class:`ConfigError` says so when it is missing).
    ``deploy=True`` exports the deploy form (``blockzoo.deploy.reparameterize``: BN folded, re-parameterizable blocks
    merged; ``model`` itself is not changed), checked against the eager original; a quantized model
    (``blockzoo.deploy.quantize``) is written in its back end's format by its own ``save``.
    ``latency=True`` adds ``"latency_ms"``: the median milliseconds (``latency_iters`` timed calls after warm-up,
    torch's thread count for onnxruntime too) of the eager model, of the deploy form (with ``deploy``) and of the
    written file (``"onnxruntime"`` or ``"torch-export"``), ``{runner: {batch: ms}}`` at batch 1 (when dynamic) and
    at the example's batch size.
    """
    check_choice(format, "format", EXPORT_FORMATS, owner="export_model")
    check_int(latency_iters, "latency_iters", min_value=1, owner="export_model")
    path = os.fspath(path)
    if format == "onnx":
        _require_onnx(check)
    if example is None:
        example = _default_example(model)
    if not isinstance(example, torch.Tensor) or not example.is_floating_point():
        raise InputShapeError(f"export_model: example must be a floating-point tensor batch, got "
                              f"{type(example).__name__ if not isinstance(example, torch.Tensor) else example.dtype}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _outputs(model(example))
            target = _deploy_form(model) if deploy else model
            if format == "onnx":
                atomic_write(path, _write_onnx(target, example, len(expected), dynamic))
            else:
                program = _export_program(target, example, dynamic)
                atomic_write(path, lambda tmp: _save_program(program, tmp))
            result: dict[str, Any] = {"format": format, "path": path, "max_abs_diff": None, "rtol": rtol,
                                      "atol": atol, "ok": None}
            if check:
                run = _onnx_runner(path) if format == "onnx" else _program_runner(path)
                inputs = [example]
                if dynamic:  # a second batch size through the dynamic axis
                    inputs.append(torch.randn(example.shape[0] + 1, *example.shape[1:], device=example.device,
                                              dtype=example.dtype))
                diffs = [_compare(expected if x is example else _outputs(model(x)), run(x), rtol, atol) for x in inputs]
                result.update(max_abs_diff=max(d for d, _ in diffs), ok=all(ok for _, ok in diffs))
            if latency:
                runs = {"eager": model, **({"deploy": target} if deploy else {}),
                        "onnxruntime" if format == "onnx" else format:
                        _onnx_runner(path) if format == "onnx" else _program_runner(path)}
                result["latency_ms"] = _latencies(runs, example, dynamic, latency_iters)
            return result
    finally:
        model.train(was_training)
