"""MAC / FLOP counting for arbitrary PyTorch modules.

Counting convention
-------------------
* **MACs** (multiply-accumulates, one fused multiply-add = 1) are the primary number. This is what fvcore, mmengine,
  timm (``gmacs``), ptflops, thop and torchinfo count, and what vision papers call "FLOPs" almost everywhere.
* **FLOPs** = 2 x MACs, the convention of ``torch.utils.flop_counter.FlopCounterMode``.
* Only contraction-like ops contribute: convolutions, ``mm``/``addmm``/``bmm``/``baddbmm`` (so ``nn.Linear``,
  ``torch.matmul`` and ``torch.einsum``, which decompose into them), scaled-dot-product attention and FFTs. Bias
  additions, normalisation, activations, pooling, elementwise ops, reductions and data movement are **not** counted
  ("ignored by convention"); every such op is still listed with its call count. Any other op that does real compute
  without a formula here (``torch.cdist``, ``torch.linalg.*``, custom ops, ...) is listed as *really uncounted*, so a
  MAC number that silently misses work is visible.

Formulas
--------
The formulas of ``torch.utils.flop_counter`` (``flop_registry``) are used for every op that torch knows. blockzoo adds
formulas for the ops torch 2.13 counts as zero (fidelity.md §5, pytorch/pytorch#195460):

* CPU / "overrideable" / MPS scaled-dot-product attention (``aten._scaled_dot_product_flash_attention_for_cpu``,
  ``aten._scaled_dot_product_fused_attention_overrideable``, ``aten._scaled_dot_product_attention_math_for_mps``):
  MACs = B * H_q * L * S * (E + E_v) for query ``(..., L, E)``, key ``(..., S, E)``, value ``(..., S, E_v)`` with
  B * H_q = product of the query's leading dims (grouped-query attention: key/value heads are broadcast). This is the
  formula torch uses for the CUDA kernels; masks and ``is_causal`` are ignored (full L x S, like torch and fvcore).
  Backward: B * H_q * L * S * (3E + 2E_v) (torch's backward convention, recomputing the scores).
* FFTs (``aten._fft_r2c``, ``aten._fft_c2r``, ``aten._fft_c2c``): **MACs = numel(input) * ceil(log2(N))**, where N is
  the product of the input's sizes along the transformed dims (for ``irfft`` the input is the half spectrum). This is
  the convention of HorNet's ``calc_flops.py`` (fvcore handler ``rfft_flop_jit``, registered for ``fft_rfft2`` and
  ``fft_irfft2``: ``N * C * ceil(log2(N))`` with N = H * W for a ``(1, H, W, C)`` input) generalised to any layout,
  batch size and FFT op. Caveat: that handler unpacks the input shape as ``(B, H, W, C)`` while HorNet's
  ``GlobalLocalFilter`` calls ``rfft2`` on ``(B, C, H, W)`` with ``dim=(2, 3)``, so HorNet's own numbers use
  ``ceil(log2(C * H))`` as the log factor instead of ``ceil(log2(H * W))`` (the ``numel`` factor is identical);
  blockzoo uses the transformed dims, as the formula intends. For a ``(1, H, W, C)`` input transformed over
  ``dim=(1, 2)`` the two agree exactly.
* Matrix-vector-like ops torch does not count: ``mv``/``addmv`` (M * N), ``dot``/``vdot`` (N), ``addbmm``
  (B * M * K * N), ``_int_mm`` and ``_addmm_activation`` (M * K * N), ``mkldnn_linear`` (numel(out) * K).

Nothing is registered globally by default: counting uses its own dispatch mode with a merged registry (blockzoo's
formulas take precedence over torch's for the ops above, so the stated conventions do not drift with torch versions).
Use :func:`extra_flop_formulas` with ``FlopCounterMode(custom_mapping=...)``, or call :func:`register_flop_formulas`
(idempotent) if you want torch's own ``FlopCounterMode`` to know them globally.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

__all__ = [
    "MacCount",
    "count_macs",
    "classify_op",
    "extra_flop_formulas",
    "register_flop_formulas",
    "fft_macs",
    "sdpa_macs",
    "FFT_CONVENTION",
    "SDPA_CONVENTION",
]

aten = torch.ops.aten

FFT_CONVENTION = (
    "FFT MACs = numel(input) * ceil(log2(N)), N = product of the input sizes along the transformed dims "
    "(HorNet calc_flops.py / fvcore rfft_flop_jit convention, generalised)"
)
SDPA_CONVENTION = "SDPA MACs = B*H_q*L*S*(E + E_v) (torch FlopCounterMode formula; masks/causality ignored)"


# ----------------------------------------------------------------------------------------------------------------
# Formulas. Each takes *shapes* (tensors replaced by torch.Size) plus the op's non-tensor arguments and returns FLOPs
# (= 2 x MACs), the unit of torch.utils.flop_counter, so that they can be handed to FlopCounterMode unchanged.
# ----------------------------------------------------------------------------------------------------------------


def _prod(xs: Sequence[int]) -> int:
    return int(math.prod(int(x) for x in xs))


def _ceil_log2(n: int) -> int:
    return (int(n) - 1).bit_length() if n > 1 else 0


def sdpa_macs(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """MACs of one scaled-dot-product attention: ``prod(query[:-1]) * S * (E + E_v)``.

    ``query_shape = (..., L, E)``, ``key_shape = (..., S, E)``, ``value_shape = (..., S, E_v)``. The leading dims of the
    query (batch x query heads) are used, so grouped-query attention counts every query head.
    """
    if len(query_shape) < 2 or len(key_shape) < 2 or len(value_shape) < 2:
        raise ValueError(f"SDPA shapes must have >= 2 dims, got q={query_shape}, k={key_shape}, v={value_shape}")
    s = int(key_shape[-2])
    return _prod(query_shape[:-1]) * s * (int(query_shape[-1]) + int(value_shape[-1]))


def _sdpa_backward_macs(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    s = int(key_shape[-2])
    e, ev = int(query_shape[-1]), int(value_shape[-1])
    return _prod(query_shape[:-1]) * s * (3 * e + 2 * ev)


def fft_macs(input_shape: Sequence[int], dim: Sequence[int]) -> int:
    """MACs of one FFT op: ``numel(input) * ceil(log2(N))`` with ``N = prod(input_shape[d] for d in dim)``."""
    ndim = len(input_shape)
    if ndim == 0:
        return 0
    n = _prod([input_shape[int(d) % ndim] for d in dim])
    return _prod(input_shape) * _ceil_log2(n)


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * sdpa_macs(query_shape, key_shape, value_shape)


def _sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _sdpa_backward_macs(query_shape, key_shape, value_shape)


def _fft_flop(self_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return 2 * fft_macs(self_shape, dim)


def _mv_flop(mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _addmv_flop(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _addbmm_flop(self_shape, b1_shape, b2_shape, *args, out_shape=None, **kwargs) -> int:
    b, m, k = (int(x) for x in b1_shape)
    n = int(b2_shape[-1])
    return 2 * b * m * k * n


def _mm_like_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    m, k = (int(x) for x in a_shape)
    return 2 * m * k * int(b_shape[-1])


def _addmm_activation_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return _mm_like_flop(a_shape, b_shape)


def _mkldnn_linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    # weight: (out_features, in_features); output numel = prod(x[:-1]) * out_features
    return 2 * _prod(x_shape[:-1]) * _prod(w_shape)


def _build_extra_formulas() -> dict[Any, Callable[..., int]]:
    table: list[tuple[str, Callable[..., int]]] = [
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_flop),
        ("_scaled_dot_product_fused_attention_overrideable", _sdpa_flop),
        ("_scaled_dot_product_attention_math_for_mps", _sdpa_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward_flop),
        ("_scaled_dot_product_fused_attention_overrideable_backward", _sdpa_backward_flop),
        ("_fft_r2c", _fft_flop),
        ("_fft_c2r", _fft_flop),
        ("_fft_c2c", _fft_flop),
        ("mv", _mv_flop),
        ("addmv", _addmv_flop),
        ("dot", _dot_flop),
        ("vdot", _dot_flop),
        ("addbmm", _addbmm_flop),
        ("_int_mm", _mm_like_flop),
        ("_addmm_activation", _addmm_activation_flop),
        ("mkldnn_linear", _mkldnn_linear_flop),
    ]
    out: dict[Any, Callable[..., int]] = {}
    for name, fn in table:
        packet = getattr(aten, name, None)  # some ops do not exist in every torch build
        if packet is not None:
            out[packet] = fn
    return out


_EXTRA_FORMULAS = _build_extra_formulas()


def extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """blockzoo's extra formulas, ``{aten op packet: fn(shapes..., out_shape=None) -> FLOPs}``.

    Suitable for ``torch.utils.flop_counter.FlopCounterMode(custom_mapping=extra_flop_formulas())``.
    """
    return dict(_EXTRA_FORMULAS)


def register_flop_formulas() -> list[str]:
    """Register blockzoo's extra formulas in torch's global ``flop_registry`` (idempotent; never overrides torch).

    Not needed by :func:`count_macs`; only for users who want ``FlopCounterMode`` itself to count CPU SDPA and FFTs.
    Returns the names of the ops newly registered by this call.
    """
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    added = []
    for packet, fn in _EXTRA_FORMULAS.items():
        if packet not in flop_registry:
            register_flop_formula(packet)(fn)
            added.append(str(packet))
    return added


def _shape_wrapper(fn: Callable[..., int]) -> Callable[..., int]:
    def wrapped(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        def to_shape(x: Any) -> Any:
            return x.shape if isinstance(x, torch.Tensor) else x

        args, kwargs, out_shape = tree_map(to_shape, (args, kwargs, out_val))
        return fn(*args, out_shape=out_shape, **kwargs)

    return wrapped


def _merged_registry() -> dict[Any, Callable[..., int]]:
    """torch's registry (already shape-wrapped) overlaid with blockzoo's formulas (wrapped here)."""
    from torch.utils.flop_counter import flop_registry

    merged = dict(flop_registry)
    merged.update({k: _shape_wrapper(v) for k, v in _EXTRA_FORMULAS.items()})
    return merged


# ----------------------------------------------------------------------------------------------------------------
# Op classification: which uncounted ops are ignored by convention and which are compute we cannot count.
# ----------------------------------------------------------------------------------------------------------------

_NORM = {
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "_batch_norm_with_update", "_batch_norm_no_update",
    "_batch_norm_impl_index", "batch_norm", "cudnn_batch_norm", "miopen_batch_norm", "native_layer_norm",
    "layer_norm", "native_group_norm", "group_norm", "instance_norm", "_fused_rms_norm", "rms_norm",
    "renorm", "batch_norm_stats", "batch_norm_elemt", "batch_norm_gather_stats", "batch_norm_gather_stats_with_counts",
    "_native_batch_norm_legit_no_stats", "mkldnn_batch_norm", "local_response_norm",
}
_POOL = {
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "fractional_max_pool2d", "fractional_max_pool3d",
    "max_unpool2d", "max_unpool3d", "mkldnn_max_pool2d", "mkldnn_max_pool3d", "mkldnn_adaptive_avg_pool2d",
    "quantized_max_pool2d", "lp_pool2d", "lp_pool1d",
}
_ACT = {
    "_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax", "_prelu_kernel", "prelu", "glu",
    "relu", "relu6", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "leaky_relu", "elu", "selu",
    "celu", "rrelu_with_noise", "softplus", "softshrink", "hardshrink", "threshold", "sigmoid", "tanh",
    "log_sigmoid_forward", "_masked_softmax",
}
_RESAMPLE = {
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
    "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa",
    "grid_sampler_2d", "grid_sampler_3d", "cudnn_grid_sampler", "affine_grid_generator", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "im2col", "col2im",
}
_REDUCE = {
    "sum", "mean", "amax", "amin", "max", "min", "aminmax", "var", "std", "var_mean", "std_mean", "prod", "norm",
    "linalg_vector_norm", "_linalg_vector_norm", "frobenius_norm", "logsumexp", "cumsum", "cumprod", "cummax",
    "cummin", "_cummax_helper", "_cummin_helper", "logcumsumexp", "_logcumsumexp", "argmax", "argmin", "all",
    "any", "count_nonzero", "nansum", "nanmean", "sort", "argsort", "topk", "kthvalue", "median", "nanmedian",
    "mode", "_unique2", "unique_dim", "unique_consecutive", "bincount", "histc", "searchsorted", "bucketize",
    "is_nonzero", "equal", "allclose", "isin",
}
_RANDOM = {
    "bernoulli", "bernoulli_", "native_dropout", "dropout", "feature_dropout", "alpha_dropout", "rand", "randn",
    "randint", "rand_like", "randn_like", "randint_like", "randperm", "normal", "normal_", "uniform_",
    "exponential_", "geometric_", "cauchy_", "log_normal_", "random_", "multinomial", "_fused_dropout",
}
_DATA = {
    # copies, creation, indexing, padding, concatenation, metadata
    "clone", "copy_", "copy", "_to_copy", "to", "_copy_from", "_copy_from_and_resize", "contiguous", "cat", "stack",
    "_unsafe_view", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill_", "fill", "zero_", "arange",
    "linspace", "logspace", "eye", "scalar_tensor", "lift_fresh", "lift_fresh_copy", "lift", "detach", "detach_",
    "alias", "index", "index_select", "index_put", "index_put_", "_index_put_impl_", "index_add", "index_add_",
    "index_copy", "index_copy_", "index_fill", "index_fill_", "index_reduce", "gather", "scatter", "scatter_",
    "scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_", "masked_fill", "masked_fill_",
    "masked_scatter", "masked_scatter_", "masked_select", "take", "take_along_dim", "put", "put_",
    "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "_pad_circular", "pad", "roll", "flip", "fliplr", "flipud", "rot90",
    "repeat", "repeat_interleave", "tile", "embedding", "embedding_dense_backward", "nonzero", "nonzero_static",
    "_local_scalar_dense", "item", "one_hot", "tril", "triu", "tril_indices", "triu_indices", "diag_embed",
    "diagonal_scatter", "select_scatter", "slice_scatter", "as_strided_scatter", "_assert_async",
    "_assert_scalar", "_assert_tensor_metadata", "sym_constrain_range", "sym_constrain_range_for_size",
    "_functional_sym_constrain_range", "resize_", "resize_as_", "set_", "record_stream", "_resize_output_",
    "_has_compatible_shallow_copy_type", "_reshape_alias", "_reshape_copy", "_unsafe_index", "_unsafe_index_put",
    "block_diag", "cartesian_prod", "meshgrid", "_pin_memory", "_to_dense", "to_dense", "to_mkldnn",
    "_nested_tensor_from_mask", "view_as_real", "view_as_complex", "_conj", "_conj_physical", "conj_physical",
    "resolve_conj", "resolve_neg", "_neg_view", "_foreach_copy_",
    "_make_dep_token", "zeros_like_", "complex", "polar", "_efficientzerotensor", "sparse_coo_tensor",
}


_TAG_POINTWISE = getattr(torch.Tag, "pointwise", None)
_TAG_REDUCTION = getattr(torch.Tag, "reduction", None)
_TAGS_VIEW = {t for t in (getattr(torch.Tag, "inplace_view", None), getattr(torch.Tag, "view_copy", None)) if t}


def classify_op(func: Any) -> str | None:
    """Category of an op that has no MAC formula: a name if it is ignored by convention, ``None`` if it is compute.

    Categories: ``elementwise``, ``normalization``, ``pooling``, ``activation``, ``resampling``, ``reduction/sort``,
    ``random/dropout``, ``view/copy``.
    """
    packet = getattr(func, "_overloadpacket", func)
    qualified = str(packet)
    ns, _, name = qualified.partition(".")
    if ns == "prim":
        return "view/copy"
    if ns != "aten":
        return None  # custom ops (torch.library, triton, extensions): we cannot know what they compute
    tags = set(getattr(func, "tags", ()) or ())
    names = {name, name.rstrip("_")}  # in-place variants (relu_, add_, ...) share their op's category
    if names & _NORM:
        return "normalization"
    if names & _POOL:
        return "pooling"
    if names & _ACT:
        return "activation"
    if names & _RESAMPLE:
        return "resampling"
    if names & _RANDOM:
        return "random/dropout"
    if names & _DATA:
        return "view/copy"
    if _TAG_POINTWISE in tags:
        return "elementwise"
    if names & _REDUCE or (_TAG_REDUCTION is not None and _TAG_REDUCTION in tags):
        return "reduction/sort"
    if getattr(func, "is_view", False) or tags & _TAGS_VIEW:
        return "view/copy"
    if name.startswith(("_foreach_", "sym_", "_fused_adam", "_fused_sgd")):
        return "elementwise"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Counting mode
# ----------------------------------------------------------------------------------------------------------------

# Metadata queries that FlopCounterMode passes through untouched (so that tensor subclasses keep working).
_PASSTHROUGH = {
    aten.sym_is_contiguous.default if hasattr(aten, "sym_is_contiguous") else None,
    aten.is_contiguous.default,
    aten.is_contiguous.memory_format,
    aten.is_strides_like_format.default,
    aten.is_non_overlapping_and_dense.default,
    aten.size.default,
    aten.sym_size.default,
    aten.stride.default,
    aten.sym_stride.default,
    aten.storage_offset.default,
    aten.sym_storage_offset.default,
    aten.numel.default,
    aten.sym_numel.default,
    aten.dim.default,
    torch.ops.prim.layout.default,
} - {None}


@dataclass
class MacCount:
    """Result of :func:`count_macs`.

    ``macs``/``flops`` are totals for the whole batch that was run (FLOPs = 2 x MACs). ``by_module`` maps every module
    that ran (qualified name, ``""`` = the root) to the MACs of the ops executed inside it, descendants included.
    ``uncounted_ops`` / ``ignored_ops`` map aten op names (``"aten._cdist_forward"``) to call counts.
    """

    macs: int
    flops: int
    by_module: dict[str, int]
    uncounted_ops: dict[str, int]
    ignored_ops: dict[str, int]
    ignored_by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    counted_ops: dict[str, int] = field(default_factory=dict)
    macs_by_op: dict[str, int] = field(default_factory=dict)
    batch_size: int | None = None

    def top_level(self) -> dict[str, int]:
        """MACs per top-level child (in call order); ops run directly in the root's forward go under ``"(root)"``."""
        out = {k: v for k, v in self.by_module.items() if k and "." not in k}
        rest = self.macs - sum(out.values())
        if rest:
            out["(root)"] = rest
        return out

    def at_depth(self, depth: int) -> dict[str, int]:
        """MACs of the modules at a given nesting depth (1 = top-level children)."""
        return {k: v for k, v in self.by_module.items() if k and k.count(".") == depth - 1}

    def to_dict(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "by_module": dict(self.by_module),
            "uncounted_ops": dict(self.uncounted_ops),
            "ignored_ops": dict(self.ignored_ops),
            "ignored_by_category": {k: dict(v) for k, v in self.ignored_by_category.items()},
            "counted_ops": dict(self.counted_ops),
            "macs_by_op": dict(self.macs_by_op),
            "batch_size": self.batch_size,
        }


class _CountingMode(TorchDispatchMode):
    """Dispatch mode that counts FLOPs of known ops and records every executed aten op."""

    supports_higher_order_operators = True

    def __init__(self, registry: Mapping[Any, Callable[..., int]]) -> None:
        super().__init__()
        self.registry = registry
        self.module_stack: list[str] = []
        self.flops_by_module: dict[str, int] = {}
        self.flops_by_op: dict[str, int] = {}
        self.counted: dict[str, int] = {}
        self.uncounted: dict[str, int] = {}
        self.ignored: dict[str, dict[str, int]] = {}

    def _add_flops(self, name: str, flops: int) -> None:
        self.flops_by_op[name] = self.flops_by_op.get(name, 0) + flops
        self.counted[name] = self.counted.get(name, 0) + 1
        for mod in set(self.module_stack):
            self.flops_by_module[mod] = self.flops_by_module.get(mod, 0) + flops

    def _record_uncounted(self, func: Any, name: str) -> None:
        category = classify_op(func)
        if category is None:
            self.uncounted[name] = self.uncounted.get(name, 0) + 1
        else:
            bucket = self.ignored.setdefault(category, {})
            bucket[name] = bucket.get(name, 0) + 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _PASSTHROUGH:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            name = f"hop.{getattr(func, '_name', str(func))}"
            if func not in self.registry:  # e.g. control flow; we cannot see inside without re-implementing it
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
            return NotImplemented
        packet = func._overloadpacket
        if packet not in self.registry and func is not torch.ops.prim.device.default:
            with self:  # composite ops: count their decomposition (mirrors FlopCounterMode)
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        name = str(packet)
        formula = self.registry.get(packet)
        if formula is not None:
            self._add_flops(name, int(formula(*args, **kwargs, out_val=out)))
        else:
            self._record_uncounted(func, name)
        return out


@contextmanager
def _module_scopes(model: nn.Module, stack: list[str]) -> Iterator[None]:
    """Push/pop qualified module names on ``stack`` around every module forward."""
    handles = []

    def make_hooks(name: str) -> tuple[Callable[..., None], Callable[..., None]]:
        def pre(_m: nn.Module, _args: Any) -> None:
            stack.append(name)

        def post(_m: nn.Module, _args: Any, _out: Any) -> None:
            if stack and stack[-1] == name:
                stack.pop()
            elif name in stack:  # out-of-order exit (exception inside a child): unwind to this module
                del stack[len(stack) - 1 - stack[::-1].index(name):]

        return pre, post

    try:
        for name, mod in model.named_modules():
            pre, post = make_hooks(name)
            try:
                h_pre = mod.register_forward_pre_hook(pre)
            except (RuntimeError, AttributeError, TypeError):  # e.g. TorchScript modules: attributed to the parent
                continue
            handles.append(h_pre)
            handles.append(mod.register_forward_hook(post, always_call=True))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    """nn.MultiheadAttention / TransformerEncoderLayer inference fast paths run as one opaque kernel; use the slow path
    (identical maths, made of countable ops) while counting."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "get_fastpath_enabled"):
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device, torch.float32
    return torch.device("cpu"), torch.float32


def make_input(model: nn.Module, input_size: Sequence[int], batch_size: int = 1,
               device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A standard-normal input of shape ``(batch_size, *input_size)`` on the model's device and float dtype."""
    if isinstance(input_size, int):
        input_size = (input_size,)
    try:
        size = tuple(int(s) for s in input_size)
    except TypeError as e:
        raise TypeError(f"input_size must be a tuple of ints without the batch dim, e.g. (3, 224, 224); "
                        f"got {input_size!r}") from e
    if any(s <= 0 for s in size) or int(batch_size) <= 0:
        raise ValueError(f"input_size and batch_size must be positive, got input_size={size}, batch_size={batch_size}")
    mdev, mdtype = _model_device_dtype(model)
    return torch.randn(int(batch_size), *size, device=device or mdev, dtype=dtype or mdtype)


def _as_args(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise TypeError(f"inputs must be a Tensor, a tuple/list of positional args or a dict of kwargs, "
                    f"got {type(inputs).__name__}")


def count_macs(model: nn.Module, input_size: Sequence[int] | None = None, *, inputs: Any = None,
               batch_size: int = 1) -> MacCount:
    """Count the MACs/FLOPs of one forward pass of ``model`` (in eval mode, without autograd).

    Args:
        model: any ``nn.Module``; its train/eval flags are restored afterwards and it is not otherwise modified.
        input_size: input shape *without* the batch dim, e.g. ``(3, 224, 224)``; a random input of shape
            ``(batch_size, *input_size)`` is created on the model's device.
        inputs: alternatively, the actual input: a Tensor, a tuple of positional args, or a dict of kwargs.
        batch_size: batch size used with ``input_size`` (the counts are for the whole batch).

    Returns:
        :class:`MacCount`. See the module docstring for which ops are counted and the formulas used.

    Note: the first call in a process is slower (about 1-3 s on a small CPU) because torch imports ``torch._dynamo``
    the first time any ``TorchDispatchMode`` (also ``FlopCounterMode``) dispatches an op.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_macs expects an nn.Module, got {type(model).__name__}")
    if inputs is None:
        if input_size is None:
            raise ValueError("count_macs needs input_size=(C, H, W) (without batch dim) or inputs=<tensor/tuple/dict>")
        inputs = make_input(model, input_size, batch_size)
        bs: int | None = int(batch_size)
    else:
        first = inputs if isinstance(inputs, torch.Tensor) else None
        if isinstance(inputs, (tuple, list)) and inputs and isinstance(inputs[0], torch.Tensor):
            first = inputs[0]
        bs = int(first.shape[0]) if first is not None and first.dim() > 0 else None
    args, kwargs = _as_args(inputs)

    mode = _CountingMode(_merged_registry())
    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), _mha_fastpath_disabled(), _module_scopes(model, mode.module_stack), mode:
            model(*args, **kwargs)
    finally:
        for m, flag in training.items():
            m.training = flag

    flops = sum(mode.flops_by_op.values())
    names = [n for n, _ in model.named_modules()]
    by_module = {n: mode.flops_by_module.get(n, 0) // 2 for n in names if n in mode.flops_by_module or n == ""}
    # modules that ran but did no counted compute are also listed (with 0) when they are top-level children
    for n, _ in model.named_children():
        by_module.setdefault(n, 0)
    order = {n: i for i, n in enumerate(names)}
    by_module = dict(sorted(by_module.items(), key=lambda kv: order.get(kv[0], len(order))))
    ignored_flat: dict[str, int] = {}
    for bucket in mode.ignored.values():
        for k, v in bucket.items():
            ignored_flat[k] = ignored_flat.get(k, 0) + v
    return MacCount(
        macs=flops // 2,
        flops=flops,
        by_module=by_module,
        uncounted_ops=dict(sorted(mode.uncounted.items(), key=lambda kv: -kv[1])),
        ignored_ops=dict(sorted(ignored_flat.items(), key=lambda kv: -kv[1])),
        ignored_by_category={k: dict(sorted(v.items(), key=lambda kv: -kv[1]))
                             for k, v in sorted(mode.ignored.items())},
        counted_ops=dict(mode.counted),
        macs_by_op={k: v // 2 for k, v in mode.flops_by_op.items()},
        batch_size=bs,
    )
