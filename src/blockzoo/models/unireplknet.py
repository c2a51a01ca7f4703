"""UniRepLKNet (Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition", CVPR 2024, arXiv:2311.15599 [S084]; journal extension [S016]).

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` with its own block class, following the official
``unireplknet.py`` (AILab-CVC/UniRepLKNet):

- **Stem**: conv 3x3/2 (C/2, bias) -> LayerNorm -> GELU -> conv 3x3/2 (C, bias) -> LayerNorm (:class:`UniRepLKNetStem`).
- **Downsampling** (stages 1-3): conv 3x3/2 p1 (bias) -> LayerNorm.
- **Block** (:class:`UniRepLKNetBlock`)::

      x + DP(gamma * BN(Linear_no_bias(GRN(GELU(Linear(SE(BN(dwconv(x)))))))))

  ``dwconv`` is the ``mixer`` slot: the Dilated Reparam Block (``dilated_reparam``, K = 13) in blocks with kernel
  >= 7; blocks whose kernel is 3 (or 5) use a plain bias-free depthwise conv, as the official code does
  (``kernel_size in [3, 5]``: ``get_conv2d(..., bias=False)``); both are followed by the block's BatchNorm. ``SE``
  is the ``attn`` slot (official ``SEBlock(dim, dim // 4)``: GAP -> FC(C, C/4, bias) -> ReLU -> FC(C/4, C, bias)
  -> sigmoid -> rescale; our ``se(reduction=4)`` with linear layers, same parameters and function). The FFN is
  ``Linear(C, 4C)`` -> GELU -> GRN (ConvNeXt-V2 global response normalisation on NHWC, with bias) ->
  ``Linear(4C, C, bias=False)`` -> BatchNorm -> layer scale ``gamma`` (1e-6) -> stochastic depth -> residual.
- **Head**: global average pooling -> LayerNorm (eps 1e-6) -> Linear (``head_norm="post"``).
- **Kernel sizes per block** (official defaults by depths, registered as the per-block default of the ``mixer`` slot,
  ``KernelSchedule(default_kernel_sizes(depths))``; ``mixer=KernelSchedule(kernel_sizes)`` overrides): A/F/P
  (2, 2, 6, 2): 3 in stage 0, 13 elsewhere; N (2, 2, 8, 2): same; T (3, 3, 18, 3): stage 2 alternates 13, 3; S/B/L/XL
  (3, 3, 27, 3): stage 2 repeats 13, 3, 3. Other depths: 3 in stage 0, 13 elsewhere.
- **Init**: trunc-normal(0.02) convs/linears, zero biases (official ``_init_weights``); norms 1/0; GRN gamma/beta 0.

Slots: ``mixer`` (``dilated_reparam``; any mixer, e.g. ``mixer="dwconv"``), ``norm`` (``ln2d``: the stem,
downsampling and head LayerNorms), ``act`` (``gelu``: FFN and stem), ``attn`` (``se(reduction=4)``), ``head``
(``avg``). The two BatchNorms inside each block come from ``block_kwargs={"block_norm": "bn"}`` (the official code
always uses BN there; re-parameterisation folds them only when they are BN).

Deploy form: :func:`blockzoo.deploy.reparameterize(model) <blockzoo.deploy.reparam.reparameterize>` calls
:meth:`UniRepLKNetBlock.reparameterize` (official ``UniRepLKNetBlock.reparameterize``): the Dilated Reparam Block is
merged into one 13x13 depthwise conv, the block BN is folded into it (the 3x3 blocks become a biased 3x3 dw conv),
and the GRN bias, the FFN BatchNorm and the layer scale are folded into the second Linear (which gains a bias). The
eval output is unchanged (test: ``unireplknet_a`` at 64 px, max abs diff < 1e-4 of the output scale).

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``),
in the training and the deploy form. Paper: official README, ImageNet-1K table (#params / FLOPs at 224 px), which
counts the **deploy** (re-parameterised) structure; the training structure carries the extra branch kernels and
BatchNorms. Params exact (asserted by tests/models/test_unireplknet.py); MACs with ``blockzoo.profile.count_macs``
(convs +
linears; BN, LN, GELU, GRN, SE gating and elementwise ops uncounted). The README gives one decimal: UniRepLKNet-A's 4.4M
means 4.35M-4.45M and 0.6G means 0.55G-0.65G; our deploy 4.437M and 0.640G lie inside.

Deploy speed (claim "faster inference"), measured on this project's shared 2-core AMD EPYC CPU with
``blockzoo.profile.profile`` (torch 2.13, 1 thread, batch 1, eval, fp32, 224 px; ``benchmarks/reparam_latency.py``: 9
interleaved rounds, each the median of >= 5 timed iterations after 2 warm-ups; the machine was shared (load
average 5 on 2 cores), so the minimum and the median over the rounds are both given; ``DEPLOY_LATENCY_MS``):

============= ==================== =================== =========
unireplknet_a training structure   deploy structure    speed-up
============= ==================== =================== =========
median        124.4 ms             87.3 ms             1.42x
minimum       99.3 ms              70.4 ms             1.41x
============= ==================== =================== =========

An earlier 5-round run gave 153 -> 86 ms (median) and 88 -> 63 ms (minimum). The deploy model also has 4.6% fewer
parameters and 5.2% fewer MACs, and runs one conv per Dilated Reparam Block instead of six convs + six BNs, with
the two block BNs and the layer scale folded away (which of these dominates the gain was not measured).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.blocks.common.drop import make_drop_path
from blockzoo.blocks.common.layer_scale import LayerScale, layer_scale
from blockzoo.blocks.common.mlp import to_nhwc
from blockzoo.blocks.mixers.dilated_reparam import DilatedReparamBlock
from blockzoo.deploy.reparam import bn_scale_shift, fuse_conv_bn
from blockzoo.errors import ConfigError
from blockzoo.models.base import PerBlock, out_size
from blockzoo.models.metaformer import MetaFormer, metaformer_entry
from blockzoo.registry import Claim, SlotContext, build_slot, register_model

__all__ = ["GRN", "UniRepLKNetBlock", "UniRepLKNetStem", "KernelSchedule", "unireplknet_slots",
           "DEFAULT_KERNEL_SIZES",
           "default_kernel_sizes", "UNIREPLKNET"]

_T = "tests/models/test_unireplknet.py::"


# ------------------------------------------------------------------------------------------------------- layers
class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt V2) on an NHWC tensor, UniRepLKNet's ``GRNwithNHWC``::

        Gx = ||x||_2 over (H, W);  Nx = Gx / (mean_C(Gx) + eps);  y = (gamma * Nx + 1) * x + beta

    ``gamma``/``beta`` are zero-initialised (the layer starts as the identity). ``beta`` is ``None`` once folded
    into the following Linear by :meth:`UniRepLKNetBlock.reparameterize` (official deploy ``use_bias=False``).
    """

    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, 2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        y = (self.gamma * nx + 1) * x
        return y if self.beta is None else y + self.beta

    def init_weights(self) -> None:
        nn.init.zeros_(self.gamma)
        if self.beta is not None:
            nn.init.zeros_(self.beta)

    def extra_repr(self) -> str:
        return f"dim={self.gamma.numel()}, eps={self.eps:g}, bias={self.beta is not None}"


class UniRepLKNetStem(nn.Sequential):
    """Official stem: conv 3x3/2 (in -> C/2, bias) -> norm -> act -> conv 3x3/2 (C/2 -> C, bias) -> norm."""

    def __init__(self, in_chans: int, dim: int, norm_layer: Callable[[int], nn.Module],
                 act_layer: Callable[[], nn.Module]):
        super().__init__(nn.Conv2d(in_chans, dim // 2, 3, 2, 1), norm_layer(dim // 2), act_layer(),
                         nn.Conv2d(dim // 2, dim, 3, 2, 1), norm_layer(dim))

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(out_size(size, 2, 3, 1), 2, 3, 1)


# -------------------------------------------------------------------------------------------------------- block
class UniRepLKNetBlock(nn.Module):
    """UniRepLKNet block: ``x + DP(LS(BN(fc2(GRN(act(fc1(attn(BN(mixer(x))))))))))`` (NCHW in/out).

    Follows the MetaFormer custom-block contract (``mixer``/``attn`` arrive built; ``block_kwargs``:
    ``block_norm`` = the norm after the mixer and after ``fc2``, default ``"bn"``; ``grn`` = use GRN, default True).
    ``fc2`` has no bias when followed by a norm (official). :meth:`reparameterize` gives the deploy form.
    """

    def __init__(self, dim: int, *, mixer: nn.Module, attn: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None, act_layer: Callable[[], nn.Module] = nn.GELU,
                 mlp_ratio: float = 4.0, ls_init_value: float | None = 1e-6, drop_path: float = 0.0,
                 mlp_layout: str = "linear", feat_size: tuple[int, int] | None = None,
                 ctx: Callable[[str], SlotContext] | None = None, block_norm: Any = "bn", grn: bool = True):
        super().__init__()
        if mlp_layout != "linear":
            raise ConfigError(f"UniRepLKNetBlock runs its FFN as nn.Linear on NHWC (official layout); "
                              f"mlp_layout={mlp_layout!r} is not supported, use mlp_layout='linear'")
        hidden = int(mlp_ratio * dim)
        self.dwconv = mixer
        self.norm = build_slot("norm", block_norm, dim, ctx("norm") if ctx else None)
        self.se = attn if attn is not None else nn.Identity()
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.grn = GRN(hidden) if grn else nn.Identity()
        self.ffn_norm = build_slot("norm", block_norm, dim, ctx("ffn_norm") if ctx else None)
        self.pwconv2 = nn.Linear(hidden, dim, bias=isinstance(self.ffn_norm, nn.Identity))
        self.ls = layer_scale(dim, ls_init_value)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.grn(self.act(self.pwconv1(to_nhwc(y))))).permute(0, 3, 1, 2)
        return x + self.drop_path(self.ls(self.ffn_norm(y)))

    # ----------------------------------------------------------------------------------------- deploy
    def reparameterize(self) -> None:
        """Deploy form (eval-mode equivalent; idempotent), as the official ``UniRepLKNetBlock.reparameterize``:

        1. the mixer's own ``reparameterize()`` (Dilated Reparam Block -> one KxK dw conv with bias);
        2. the BN after the mixer is folded into that conv (or into a plain conv mixer);
        3. GRN's ``beta`` (``fc2(u + beta) = fc2(u) + W beta``), the BN after ``fc2`` and the layer scale are folded
           into ``fc2``, which gains a bias.

        Norms that are not BatchNorm (and a layer scale behind one) cannot be folded and are kept.
        """
        fn = getattr(self.dwconv, "reparameterize", None)
        if callable(fn):
            fn()
        if isinstance(self.norm, nn.BatchNorm2d):
            if isinstance(self.dwconv, nn.Conv2d) and self.dwconv.out_channels == self.norm.num_features:
                self.dwconv = fuse_conv_bn(self.dwconv, self.norm)
                self.norm = nn.Identity()
            elif isinstance(self.dwconv, DilatedReparamBlock) and self.dwconv.deployed:
                self.dwconv.lk_origin = fuse_conv_bn(self.dwconv.lk_origin, self.norm)
                self.norm = nn.Identity()
        beta = getattr(self.grn, "beta", None)
        foldable_norm = isinstance(self.ffn_norm, nn.BatchNorm2d)
        foldable_ls = isinstance(self.ls, LayerScale) and (foldable_norm or isinstance(self.ffn_norm, nn.Identity))
        if beta is None and not foldable_norm and not foldable_ls:
            return
        lin = self.pwconv2
        w = lin.weight.detach().double()
        b = lin.bias.detach().double() if lin.bias is not None else w.new_zeros(lin.out_features)
        if beta is not None:
            b = b + w @ beta.detach().double()
            self.grn.beta = None
        if foldable_norm:
            scale, shift = bn_scale_shift(self.ffn_norm)
            w, b = w * scale[:, None], b * scale + shift
            self.ffn_norm = nn.Identity()
        if foldable_ls:
            g = self.ls.gamma.detach().double()
            w, b = w * g[:, None], b * g
            self.ls = nn.Identity()
        new = nn.Linear(lin.in_features, lin.out_features, bias=True, device=lin.weight.device,
                        dtype=lin.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(w.to(lin.weight.dtype))
            new.bias.copy_(b.to(lin.weight.dtype))
        new.train(lin.training)
        self.pwconv2 = new


# ------------------------------------------------------------------------------------------- kernel schedule
# official default_depths_to_kernel_sizes
DEFAULT_KERNEL_SIZES: dict[tuple[int, ...], tuple[tuple[int, ...], ...]] = {
    (2, 2, 6, 2): ((3, 3), (13, 13), (13,) * 6, (13, 13)),                      # A, F, P
    (2, 2, 8, 2): ((3, 3), (13, 13), (13,) * 8, (13, 13)),                      # N
    (3, 3, 18, 3): ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13)),        # T
    (3, 3, 27, 3): ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13)),     # S, B, L, XL
}

MIN_REPARAM_KERNEL = 7   # official: kernel >= 7 -> DilatedReparamBlock, 3 / 5 -> plain dw conv (no bias)


def default_kernel_sizes(depths: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Official per-block kernel sizes for ``depths``; other depths: 3 in stage 0, 13 in the later stages."""
    depths = tuple(int(d) for d in depths)
    if depths in DEFAULT_KERNEL_SIZES:
        return DEFAULT_KERNEL_SIZES[depths]
    return tuple((3 if i == 0 else 13,) * d for i, d in enumerate(depths))


class KernelSchedule(PerBlock):
    """The per-block ``mixer`` value of a UniRepLKNet: block ``j`` of stage ``i`` gets ``dilated_reparam`` with kernel
    ``kernel_sizes[i][j]``; kernels below ``MIN_REPARAM_KERNEL`` (7) become a plain bias-free depthwise conv
    (``dwconv(kernel_size=k, bias=False)``) like the official block. A user value (``mixer="dwconv"``,
    ``mixer="dilated_reparam(kernel_size=9)"``) replaces the schedule as a whole."""

    def __init__(self, kernel_sizes: Sequence[Sequence[int]], min_reparam_kernel: int = MIN_REPARAM_KERNEL):
        super().__init__(self._value)
        self.kernel_sizes = tuple(tuple(int(k) for k in s) for s in kernel_sizes)
        self.min_reparam_kernel = min_reparam_kernel

    def _value(self, stage: int, block: int) -> Any:
        if stage >= len(self.kernel_sizes) or block >= len(self.kernel_sizes[stage]):
            raise ConfigError(f"the kernel schedule {self.kernel_sizes} has no kernel for block {block} of stage "
                              f"{stage}; give one kernel size per block, e.g. mixer=KernelSchedule("
                              f"default_kernel_sizes(depths)) (kernel_sizes must match the depths)")
        k = self.kernel_sizes[stage][block]
        if k < self.min_reparam_kernel:
            return "dwconv", {"kernel_size": k, "bias": False}
        return "dilated_reparam", {"kernel_size": k}

    def __repr__(self) -> str:
        return f"KernelSchedule({self.kernel_sizes})"


# ------------------------------------------------------------------------------------------------ registration
def unireplknet_slots(depths: Sequence[int]) -> dict[str, Any]:
    """The slot defaults of a UniRepLKNet with ``depths``: the official kernel schedule in the ``mixer`` slot."""
    return {"mixer": KernelSchedule(default_kernel_sizes(depths)), "norm": "ln2d", "act": "gelu",
            "attn": "se(reduction=4)", "head": "avg"}


UNIREPLKNET: dict[str, Any] = dict(
    block=UniRepLKNetBlock, block_kwargs={"block_norm": "bn"}, mlp_ratios=4.0, ls_init_value=1e-6,
    stem=UniRepLKNetStem, downsample="patch",
    downsample_kwargs=dict(kernel_size=3, stride=2, padding=1, norm_pos="post", bias=True), head_norm="post")


def _entry(name: str, depths: tuple[int, ...], dims: tuple[int, ...], small: bool = False,
           default_classes: int = 1000) -> Callable[..., MetaFormer]:
    config = dict(UNIREPLKNET, depths=depths, dims=dims, **({"stem": "small"} if small else {}))
    return metaformer_entry(name, config, default_num_classes=default_classes,
                            doc=f"UniRepLKNet ({name}): depths {depths}, dims {dims}"
                            + (", 3x3/1 stem for 28-32 px" if small else ""))


# name: (depths, dims, paper params, paper MACs); the paper counts the deploy structure
CONFIGS = {
    "unireplknet_a": ((2, 2, 6, 2), (40, 80, 160, 320), 4.4e6, 0.6e9),
    "unireplknet_t": ((3, 3, 18, 3), (80, 160, 320, 640), 31e6, 4.9e9),
}

# exact parameter counts of our builds (1000 classes, 3 input channels): training and deploy structure
_PARAMS = {"unireplknet_a": 4_649_060, "unireplknet_t": 31_693_420}
_PARAMS_DEPLOY = {"unireplknet_a": 4_437_300, "unireplknet_t": 31_037_980}
# MACs at 224 px (blockzoo.profile.count_macs): training and deploy structure; asserted by the slow tests
_MACS = {"unireplknet_a": 674_684_480, "unireplknet_t": 5_003_516_800}
_MACS_DEPLOY = {"unireplknet_a": 639_843_520, "unireplknet_t": 4_898_993_920}
_PARAMS_SMALL = 4_324_550      # unireplknet_a_small, 3 channels, 10 classes, training structure

# Measured with ``benchmarks/reparam_latency.py`` (module docstring): ms per batch-1 forward at 224 px,
# {"train" | "deploy": {"min": min over rounds of the per-round median, "median": median of the round medians}}
DEPLOY_LATENCY_MS: dict[str, dict[str, dict[str, float]]] = {
    "unireplknet_a": {"train": {"min": 99.3, "median": 124.4}, "deploy": {"min": 70.4, "median": 87.3}},
}

_NOTES = "block_kwargs sets the block's block_norm ('bn') and grn; deploy form: blockzoo.deploy.reparameterize(model)."


def _latency_claim(name: str) -> tuple[Claim, ...]:
    lat = DEPLOY_LATENCY_MS.get(name)
    if not lat:
        return ()
    return (Claim(f"the deploy model is faster: batch-1 CPU latency at 224 px {lat['train']['median']:.0f} ms -> "
                  f"{lat['deploy']['median']:.0f} ms (median of rounds; 1 thread, shared 2-core CPU)",
                  "benchmarks/reparam_latency.py", "measured"),)


def _paper_spec(name: str) -> dict[str, Any]:
    """register_model arguments of a paper UniRepLKNet (numbers from the tables above)."""
    depths, dims, pp, pm = CONFIGS[name]
    return dict(
        family="unireplknet", slots=unireplknet_slots(depths), paper=papers.UNIREPLKNET, paper_params=int(pp),
        paper_macs=pm,
        reference={"params_1000cls": _PARAMS[name], "params_1000cls_deploy": _PARAMS_DEPLOY[name],
                   "macs_224": _MACS[name], "macs_224_deploy": _MACS_DEPLOY[name]},
        summary=f"UniRepLKNet-{name[-1].upper()}: depths {depths}, dims {dims}, Dilated Reparam 13x13 mixer, SE, GRN "
                f"FFN, BN",
        claims=(Claim(f"{pp / 1e6:.1f}M parameters (paper README; deploy structure): ours {_PARAMS_DEPLOY[name]:,} "
                      f"deploy, {_PARAMS[name]:,} training", _T + "test_param_counts"),
                Claim(f"{pm / 1e9:.1f} GFLOPs (MACs) at 224 (paper README): ours {_MACS_DEPLOY[name] / 1e9:.3f}G "
                      f"deploy", _T + "test_macs_224"),
                Claim("the re-parameterised (deploy) model gives the same eval output",
                      _T + "test_model_reparam_equivalence"),
                *_latency_claim(name)),
        notes=_NOTES)


register_model("unireplknet_a", **_paper_spec("unireplknet_a"))(
    _entry("unireplknet_a", (2, 2, 6, 2), (40, 80, 160, 320)))
register_model("unireplknet_t", **_paper_spec("unireplknet_t"))(
    _entry("unireplknet_t", (3, 3, 18, 3), (80, 160, 320, 640)))
register_model(
    "unireplknet_a_small", family="unireplknet", slots=unireplknet_slots((2, 2, 6, 2)), paper=papers.UNIREPLKNET,
    input_size=(3, 32, 32),
    num_classes=10, reference={"params_3ch_10cls": _PARAMS_SMALL},
    summary="UniRepLKNet-A for 28-32 px inputs: 3x3/1 stem (feature maps 32/16/8/4), kernels 3 | 13 | 13 | 13",
    claims=(Claim(f"{_PARAMS_SMALL:,} parameters (3 channels, 10 classes); feature maps 32/16/8/4 at 32 px; same "
                  f"eval output after reparameterize", _T + "test_small_variant"),),
    notes=_NOTES + " img_size defaults to 32.",
)(_entry("unireplknet_a_small", (2, 2, 6, 2), (40, 80, 160, 320), small=True, default_classes=10))
