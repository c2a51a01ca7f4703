"""INT8 post-training quantization, quantization-aware training and 4-bit weight QAT, after Krishnamoorthi,
"Quantizing deep convolutional networks for efficient inference: A whitepaper" (arXiv:1806.08342, S007,
``papers.QUANT_WHITEPAPER``).

The paper's recipe, as implemented here:

- uniform affine quantization; weights **per-channel symmetric** int8 (one scale per output channel, zero point 0),
  activations **per-tensor affine** uint8 (one scale and zero point per tensor), ranges from calibration on a few
  hundred images (post-training static quantization, PTQ); ``per_channel=False`` gives the per-layer (per-tensor)
  weights the paper compares against (it reports that they can fail where per-channel stays within 2% of float);
- the deploy form first: ``blockzoo.deploy.reparameterize`` merges re-parameterizable blocks (and folds the BNs of
  blocks with a ``fuse()`` hook), then every remaining eval-mode conv+BN pair is folded before the weights are
  quantized, as the paper prescribes, by the back end (torch's ONNX exporter in eval mode; PT2E's ``prepare_pt2e``);
  in QAT the fold is simulated in training as the paper describes (torchao's ``prepare_qat_pt2e`` folds conv+BN with
  the batch statistics and fake-quantizes the folded weight);
- quantization-aware training (:func:`prepare_qat` / :func:`convert_qat`): fake-quant fine-tuning with
  straight-through gradients, moving-average activation ranges, for the cases where PTQ loses more than 2%;
- 4-bit weights (``weight_bits=4``: per-channel symmetric, integers in [-8, 7], activations still 8 bit), which the
  paper trains with QAT. There is no fast int4 convolution kernel on this CPU path: the converted model stores and
  computes the 4-bit values as int8, so ``weight_bits=4`` is about accuracy only.

Where the paper's values could not be read, the ones used come from PyTorch's x86 defaults (torchao 0.18
``get_default_x86_inductor_quantization_config``): a histogram observer for PTQ activation ranges (the paper uses
min/max or moving-average min/max; the histogram observer searches a clipping range that minimises the quantization
error), ``eps = 2**-12`` for scales, uint8 activations over [0, 255] (the whole range: this CPU has VNNI, so no
``reduce_range``).

Back ends (``backend=``), both measured on this machine (``benchmarks/quantize_speed.py`` ->
``benchmarks/results/quantize_speed.md``):

- ``"inductor"``: ``torch.export`` + torchao's PT2E ``prepare_pt2e`` / ``convert_pt2e`` with the
  ``X86InductorQuantizer``, then ``torch.compile`` (inductor, with weight freezing, which turns the quantize /
  dequantize patterns into oneDNN int8 convolutions and matmuls). Compiling takes seconds for ResNet-20 and a minute
  or more for ResNet-50; it is paid on the first call of each new input shape.
- ``"onnxruntime"``: the ONNX export of the deploy form, quantized with onnxruntime's static quantization (QDQ
  format, the same per-channel symmetric int8 weights and per-tensor uint8 activations, min/max calibration; only
  convolutions and matrix products, :data:`ORT_QUANTIZED_OPS`) and run by onnxruntime's CPU provider (VNNI int8
  kernels). No compile step. Its min/max calibration is cruder than PT2E's histogram observer: a random-init
  ConvNeXt's logits err by 11% of their scale here against 1.7% through PT2E (ResNet / MobileNetV2: 1-4% for both).
- ``"pt2e"``: the converted PT2E graph run as is (reference quantize/dequantize ops around float kernels): the
  numerics of ``"inductor"`` without compiling, for tests and accuracy runs; not fast.

The default (:data:`DEFAULT_BACKEND`) is ``"onnxruntime"``. Measured on this Xeon (AVX-512 with VNNI, no AMX; 2
threads, a heavily shared machine): a first probe of ResNet-20 at batch 32 gave INT8 inductor 23.7 ms vs fp32 eager
34.4 ms (1.45x) after a 19 s compile, and onnxruntime INT8 33.6 ms vs its fp32 46.9 ms with no compile; ResNet-50 at
224 px through onnxruntime measured 6.9x faster than fp32 eager at batch 32 (under that load). The two back ends are
within the load's noise of each other, so the choice rests on what is not noise: onnxruntime needs no compile
(inductor: seconds for ResNet-20, minutes for ResNet-50 on 2 loaded cores, again for every new batch size), writes
about half the file of the ``.pt2`` program (whose JSON graph outweighs a small model's int8 weights), and torch
2.13's inductor int8 conv lowering fails with a dynamic batch (so it compiles static shapes).
``benchmarks/results/quantize_speed.md`` has the numbers of the full run (1 thread, interleaved rounds, a loaded
machine): at batch 32 onnxruntime INT8 is 2.2x (ResNet-20) / 3.8x (MobileNetV2-small) faster than fp32 eager and
inductor 2.4x / 6.9x; at batch 1 onnxruntime wins (inductor's per-call overhead); the LayerNorm families gain less
(ConvNeXt, ViT, UniRepLKNet: 1.0-1.5x through onnxruntime at batch 32, 1.9-2.9x through inductor), and torchao's x86
quantizer cannot annotate LSNet (onnxruntime quantizes it). A trained Fashion-MNIST ResNet-20 keeps its float top-1
through both back ends (75.95% -> 75.90% / 76.15%).

Parity check: ``quantize`` runs the quantized model (its own back end: inductor compiles for the calibration
batch's shape here rather than on the first call) on the first calibration batch and raises a :class:`ConfigError`
when its outputs disagree with float: :func:`parity_error`, the mean over the images of
``||q(x) - f(x)|| / ||f(x)||``, above ``max_rel_err`` (default :data:`PARITY_TOL` = 0.5, i.e. an error of half the
output's size, SQNR below 6 dB; working INT8 models measure 0.01-0.06 for random-init ResNet-20 / ConvNeXt and 0.4
for a random-init MobileNetV2, whose depthwise layers quantize worst; zero outputs measure exactly 1). The recorded
value is ``info["parity_rel_err"]``. Why: a random-init MobileNetV2 in eval mode (fresh BN statistics, so BN is the
identity) shrinks its activations about tenfold per stage, to logits of 1e-9, below the PT2E x86 config's scale
floor (``eps = 2**-12``: activations under ~1e-4 round to 0): its PT2E / inductor INT8 model returned all-zero
logits, silently (``benchmarks/results/quantize_speed.md`` recorded "top-1 agree 0.00" and a meaningless 22x
speed-up), while onnxruntime's min/max calibration (no floor) kept them. Not a torch bug: trained models do not
have 1e-9 activations; the check turns such a case into one clear error naming the other back end.

Files (:meth:`QuantizedModel.save`, :func:`load_quantized`): ``"onnxruntime"`` writes the quantized ONNX model
(``.onnx``); ``"inductor"`` / ``"pt2e"`` a saved ``torch.export`` program (``.pt2``, loaded by
``torch.export.load``, no pickled Python objects). Needs ``pip install 'blockzoo[quant]'`` (torchao) for the PT2E
back ends and ``blockzoo[export]`` (onnx, onnxruntime) for the ONNX one; a :class:`ConfigError` names what is missing.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from blockzoo.checks import check_choice, check_positive
from blockzoo.errors import ConfigError, InputShapeError
from blockzoo.files import atomic_write

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "PARITY_TOL", "QuantizedModel", "quantize", "prepare_qat", "convert_qat",
           "load_quantized", "quantization_config", "latency_ms", "parity_error"]

BACKENDS = ("onnxruntime", "inductor", "pt2e")
DEFAULT_BACKEND = "onnxruntime"
WEIGHT_BITS = (8, 4)
PARITY_TOL = 0.5     # quantize's default max_rel_err (see the module docstring)
ORT_QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_SUFFIX = {"onnxruntime": ".onnx", "inductor": ".pt2", "pt2e": ".pt2"}
_QUANT_EXTRA = "pip install 'blockzoo[quant]'"
_EXPORT_EXTRA = "pip install 'blockzoo[export]'"


def _require(module: str, extra: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"{what} needs the {module!r} package, which is not installed; install it with "
                          f"{extra}") from None


def _check_options(backend: str, per_channel: bool, weight_bits: int, owner: str) -> None:
    check_choice(backend, "backend", BACKENDS, owner=owner)
    check_choice(weight_bits, "weight_bits", WEIGHT_BITS, owner=owner)
    if not isinstance(per_channel, bool):
        raise ConfigError(f"{owner}: per_channel must be True or False, got {per_channel!r}")
    if backend == "onnxruntime":
        _require("onnxruntime", _EXPORT_EXTRA, "the onnxruntime quantization back end")
        if weight_bits != 8:
            raise ConfigError(f"{owner}: the onnxruntime back end quantizes weights to 8 bits only; use "
                              f"backend='pt2e' for weight_bits={weight_bits}")
    else:
        _require("torchao", _QUANT_EXTRA, f"the {backend} quantization back end")


# ------------------------------------------------------------------------------------------------ PT2E configuration
def quantization_config(*, per_channel: bool = True, weight_bits: int = 8, qat: bool = False) -> Any:
    """torchao's ``QuantizationConfig`` of the paper's scheme: uint8 per-tensor affine activations; weights symmetric,
    per output channel (``per_channel``) or per tensor, over ``[-2**(b-1), 2**(b-1) - 1]`` for ``b = weight_bits``;
    observers for PTQ (histogram for activations, min/max for weights) or fake-quantizers with moving-average
    ranges for QAT (``qat=True``)."""
    from torchao.quantization.pt2e import (
        FusedMovingAvgObsFakeQuantize,
        HistogramObserver,
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        PerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    eps = {"eps": 2 ** -12}
    if qat:
        act_ctr = FusedMovingAvgObsFakeQuantize.with_args(**eps)
        w_obs = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
        w_ctr = FusedMovingAvgObsFakeQuantize.with_args(observer=w_obs, **eps)
    else:
        act_ctr = HistogramObserver.with_args(**eps)
        w_ctr = (PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(**eps)
    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                           is_dynamic=False, observer_or_fake_quant_ctr=act_ctr)
    half = 2 ** (weight_bits - 1)
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-half, quant_max=half - 1,
                              qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
                              ch_axis=0 if per_channel else None, is_dynamic=False, observer_or_fake_quant_ctr=w_ctr)
    return QuantizationConfig(act, act, weight, None, qat)


def _quantizer(per_channel: bool, weight_bits: int, qat: bool) -> Any:
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    return X86InductorQuantizer().set_global(quantization_config(per_channel=per_channel, weight_bits=weight_bits,
                                                                 qat=qat))


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """A ``torch.export`` program of ``model`` with a dynamic batch dimension."""
    from torch.export import Dim

    return torch.export.export(model, (example,), dynamic_shapes=({0: Dim.DYNAMIC},))


# ---------------------------------------------------------------------------------------------------- the result
class QuantizedModel(nn.Module):
    """A runnable quantized model (inference only): ``model(x)`` returns the logits as a float tensor.

    ``backend`` is one of :data:`BACKENDS`; ``info`` records the scheme (``per_channel``, ``weight_bits``,
    ``calib_images``...). The model holds either a ``torch.export`` program (``program``; run compiled by inductor
    or, ``"pt2e"``, as is) or a quantized ONNX model (``onnx_bytes``, run by an onnxruntime session with
    ``threads`` intra-op threads, default torch's thread count). ``save(path)`` writes the file the back end loads.
    ``train(True)`` raises: fine-tune with :func:`prepare_qat` instead."""

    def __init__(self, backend: str, *, program: torch.export.ExportedProgram | None = None,
                 onnx_bytes: bytes | None = None, info: dict[str, Any] | None = None, threads: int | None = None):
        super().__init__()
        check_choice(backend, "backend", BACKENDS, owner="QuantizedModel")
        if (program is None) == (onnx_bytes is None) or (onnx_bytes is None) != (backend != "onnxruntime"):
            raise ConfigError(f"QuantizedModel: backend {backend!r} needs "
                              f"{'onnx_bytes' if backend == 'onnxruntime' else 'program'} and nothing else")
        self.backend, self.program, self.onnx_bytes = backend, program, onnx_bytes
        self.info = dict(info or {}, backend=backend)
        self.training = False
        self._run: Any = None
        self._threads = threads

    @property
    def suffix(self) -> str:
        """The file suffix :meth:`save` writes: ``.onnx`` or ``.pt2``."""
        return _SUFFIX[self.backend]

    def train(self, mode: bool = True) -> QuantizedModel:
        if mode:
            raise ConfigError("a QuantizedModel runs inference only; fine-tune with blockzoo.deploy.prepare_qat and "
                              "convert_qat instead")
        return self

    def _runner(self) -> Any:
        if self._run is None:
            if self.backend == "onnxruntime":
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self._threads or torch.get_num_threads()
                opts.inter_op_num_threads = 1
                session = ort.InferenceSession(self.onnx_bytes, opts, providers=["CPUExecutionProvider"])
                self._run = lambda x: torch.from_numpy(session.run(None, {"input": x.detach().cpu().numpy()})[0])
            elif self.backend == "inductor":
                # static shapes (one compile per batch size): with a dynamic batch, torch 2.13's int8 conv lowering
                # asserts on the channels-last strides of its output (qconv_pointwise)
                self._run = torch.compile(self.program.module(), dynamic=False)
            else:
                self._run = self.program.module()
        return self._run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            raise InputShapeError(f"a QuantizedModel takes a float32 image batch, got "
                                  f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        run = self._runner()
        if self.backend != "inductor":
            return run(x)
        # freezing: weights become constants that inductor prepacks for the oneDNN int8 kernels
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return run(x)

    def to_bytes(self) -> bytes:
        """The saved file's content (its length is the model's size on disk)."""
        if self.onnx_bytes is not None:
            return self.onnx_bytes
        buf = io.BytesIO()
        torch.export.save(self.program, buf)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write the model (atomically) to ``path``, which must end in :attr:`suffix`; returns the path."""
        path = os.fspath(path)
        if not path.endswith(self.suffix):
            raise ConfigError(f"a {self.backend} QuantizedModel is saved as a {self.suffix} file, got {path!r}; "
                              f"name the file *{self.suffix}")
        data = self.to_bytes()

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
        atomic_write(path, write)
        return path


def load_quantized(path: str | os.PathLike, *, backend: str | None = None, threads: int | None = None
                   ) -> QuantizedModel:
    """Load a file written by :meth:`QuantizedModel.save`: an ``.onnx`` file (onnxruntime) or a ``.pt2`` program
    (``backend`` "inductor", the default, or "pt2e"). Neither format holds pickled Python objects."""
    path = os.fspath(path)
    if path.endswith(".onnx"):
        backend = backend or "onnxruntime"
        if backend != "onnxruntime":
            raise ConfigError(f"{path!r} is an ONNX model, which only backend='onnxruntime' runs")
        _require("onnxruntime", _EXPORT_EXTRA, "loading a quantized ONNX model")
        with open(path, "rb") as f:
            return QuantizedModel("onnxruntime", onnx_bytes=f.read(), threads=threads)
    if path.endswith(".pt2"):
        backend = backend or "inductor"
        check_choice(backend, "backend", ("inductor", "pt2e"), owner="load_quantized")
        _require("torchao", _QUANT_EXTRA, "loading a quantized torch.export program")  # registers the quant ops
        import torchao.quantization.pt2e  # noqa: F401
        return QuantizedModel(backend, program=torch.export.load(path))
    raise ConfigError(f"load_quantized reads .onnx or .pt2 files, got {path!r}")


# -------------------------------------------------------------------------------------------------- calibration
def _calib_images(calib_batches: Iterable[Any]) -> list[torch.Tensor]:
    """The calibration images: each item a float tensor batch or an ``(images, labels)`` pair."""
    if isinstance(calib_batches, torch.Tensor):
        calib_batches = [calib_batches]
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in calib_batches]
    if not xs or not all(isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim >= 2 for x in xs):
        raise ConfigError("quantize needs calibration batches: an iterable of float image tensors (N, C, H, W) or "
                          "(images, labels) pairs, with at least one batch")
    return [x.detach().float().cpu() for x in xs]


def _deploy_form(model: nn.Module, reparam: bool) -> nn.Module:
    """The float model to quantize, in eval mode: a re-parameterized copy (on the CPU, fp32) or ``model`` itself."""
    from blockzoo.deploy.reparam import reparameterize

    return reparameterize(model).cpu().float().eval() if reparam else model.eval()


def parity_error(quantized: nn.Module, float_model: nn.Module, x: torch.Tensor) -> float:
    """The mean over the images of ``x`` of ``||quantized(x_i) - float_model(x_i)|| / ||float_model(x_i)||`` (the
    outputs flattened per image): 0 for identical outputs, 1 for all-zero ones."""
    with torch.no_grad():
        ref, y = float_model(x).flatten(1), quantized(x).flatten(1)
    return float(((y - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(torch.finfo(ref.dtype).tiny)).mean())


def _check_parity(q: QuantizedModel, float_model: nn.Module, x: torch.Tensor, tol: float) -> None:
    err = parity_error(q, float_model, x)
    q.info["parity_rel_err"] = err
    if not err <= tol:
        other = "onnxruntime" if q.backend != "onnxruntime" else "pt2e"
        raise ConfigError(f"quantize: the {q.backend} INT8 model disagrees with float on the first calibration batch "
                          f"(relative error {err:.2f} > max_rel_err={tol:g}; largest float output "
                          f"{float(float_model(x).abs().max()):.2g}: an untrained model's can fall below the int8 "
                          f"scale floor), so it is not returned; use backend={other!r}, per_channel=True or a "
                          f"trained model, or pass max_rel_err=None to skip the check")


def quantize(model: nn.Module, calib_batches: Iterable[Any], *, backend: str = DEFAULT_BACKEND,
             per_channel: bool = True, weight_bits: int = 8, reparam: bool = True,
             threads: int | None = None, max_rel_err: float | None = PARITY_TOL) -> QuantizedModel:
    """Post-training static quantization of ``model`` (see the module docstring for the scheme and back ends).

    ``calib_batches``: the calibration data (float image batches or ``(images, labels)`` pairs; the paper uses a few
    hundred images). ``reparam``: convert to the deploy form first (``reparameterize``: re-parameterizable blocks
    merged; the back end folds the remaining conv+BN pairs either way; the model itself is not changed).
    ``per_channel``: per-channel (default, the paper's) or per-tensor weights. ``weight_bits``: 8, or 4 (PT2E back
    ends only; accuracy studies: no int4 kernel). ``threads``: onnxruntime's intra-op threads. ``max_rel_err``: the
    parity check's tolerance on the first calibration batch (:func:`parity_error`; ``None``: no check, e.g. to
    measure how badly a scheme fails); a :class:`ConfigError` when it is exceeded. Returns a
    :class:`QuantizedModel` whose batch size is dynamic."""
    _check_options(backend, per_channel, weight_bits, "quantize")
    if max_rel_err is not None:
        check_positive(max_rel_err, "max_rel_err", owner="quantize")
    images = _calib_images(calib_batches)
    was_training = model.training
    float_model = _deploy_form(model, reparam)
    info = {"per_channel": per_channel, "weight_bits": weight_bits, "calib_images": sum(len(x) for x in images),
            "reparameterized": reparam}
    try:
        with torch.no_grad():
            if backend == "onnxruntime":
                q = QuantizedModel(backend, onnx_bytes=_ort_quantize(float_model, images, per_channel), info=info,
                                   threads=threads)
            else:
                from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

                prepared = prepare_pt2e(_export(float_model, images[0]).module(),
                                        _quantizer(per_channel, weight_bits, qat=False))
                for x in images:
                    prepared(x)
                q = _from_converted(convert_pt2e(prepared), images[0], backend, info)
            if max_rel_err is not None:
                _check_parity(q, float_model, images[0], max_rel_err)
            return q
    finally:
        if not reparam:
            model.train(was_training)


def _from_converted(converted: Any, example: torch.Tensor, backend: str, info: dict[str, Any]) -> QuantizedModel:
    _drop_unused(converted)
    program = _export(converted, example)
    program.example_inputs = None   # not saved with the model: the file holds the graph (JSON) and raw weights only
    return QuantizedModel(backend, program=program, info=info)


def _drop_unused(graph: Any) -> None:
    """Remove the parameters and buffers a converted graph no longer reads (the float weights it replaced by int8
    constants), so that the saved program holds the int8 weights only."""
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for name in [k for k, _ in (*graph.named_parameters(), *graph.named_buffers()) if k not in used]:
        owner, _, attr = name.rpartition(".")
        delattr(graph.get_submodule(owner) if owner else graph, attr)


@contextlib.contextmanager
def _quiet(logger: str) -> Any:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _ort_quantize(model: nn.Module, images: list[torch.Tensor], per_channel: bool) -> bytes:
    """onnxruntime static quantization (QDQ, symmetric int8 weights, uint8 activations, min/max calibration) of the
    ONNX export of ``model``; the quantized model's bytes. Only the layers the paper quantizes
    (:data:`ORT_QUANTIZED_OPS`: convolutions and matrix products, with their input activations) become int8;
    norms, softmax and elementwise ops stay float, as in the PT2E x86 quantizer's default annotation."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from blockzoo.deploy.export import export_model

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(images)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self._it, None)
            return None if x is None else {"input": x.numpy()}

    with tempfile.TemporaryDirectory() as tmp:
        f32, pre, q = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        export_model(model, f32, example=images[0][:2], check=False)
        # onnxruntime logs one warning per 1-D weight it cannot quantize per channel (norms): not quantized here
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("root"):
            warnings.simplefilter("ignore")
            quant_pre_process(f32, pre, skip_symbolic_shape=True)
            quantize_static(pre, q, _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=list(ORT_QUANTIZED_OPS),
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        with open(q, "rb") as f:
            return f.read()


# ------------------------------------------------------------------------------------------------------------ QAT
def prepare_qat(model: nn.Module, example: torch.Tensor, *, per_channel: bool = True, weight_bits: int = 8) -> Any:
    """The fake-quantized training graph of ``model`` (torchao ``prepare_qat_pt2e``; BatchNorm kept and folded into
    the fake-quantized weight as the paper simulates it). ``example``: a training batch (batch size dynamic).
    Train it like any module (its ``train()`` / ``eval()`` switch BatchNorm and dropout); then
    :func:`convert_qat`. Evaluating it in eval mode gives the quantized model's accuracy (fake-quant numerics)."""
    _check_options("pt2e", per_channel, weight_bits, "prepare_qat")
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    was_training = model.training
    model.train()
    try:
        graph = _export(model, example.detach()).module()
    finally:
        model.train(was_training)
    prepared = prepare_qat_pt2e(graph, _quantizer(per_channel, weight_bits, qat=True))
    prepared.meta["blockzoo_quant"] = {"per_channel": per_channel, "weight_bits": weight_bits, "qat": True}
    return allow_exported_model_train_eval(prepared)


def convert_qat(prepared: Any, example: torch.Tensor, *, backend: str = "inductor") -> QuantizedModel:
    """The quantized model of a :func:`prepare_qat` graph after fine-tuning (``backend`` "inductor" or "pt2e")."""
    check_choice(backend, "backend", ("inductor", "pt2e"), owner="convert_qat")
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    info = dict(prepared.meta.get("blockzoo_quant", {}))
    move_exported_model_to_eval(prepared)
    with torch.no_grad():
        return _from_converted(convert_pt2e(prepared), example.detach(), backend, info)


# -------------------------------------------------------------------------------------------------------- latency
def latency_ms(model: nn.Module, x: torch.Tensor, *, warmup: int = 3, iters: int = 10) -> dict[str, float]:
    """Median (and IQR, min...) milliseconds of ``model(x)`` without gradients, after ``warmup`` calls (which pay
    any compile), over ``iters`` timed calls (``blockzoo.profile``'s timing loop and statistics)."""
    from blockzoo.profile.core import _stats_ms, _timed_loop

    with torch.no_grad():
        times, _ = _timed_loop(lambda: model(x), x.device, warmup, iters, 0.0)
    return _stats_ms(times)
