"""Convolutional Normalization (ConvNorm): Liu, Li, Zhai, You, Zhu, Fernandez-Granda & Qu, "Convolutional
Normalization: Improving Deep Convolutional Network Robustness and Training", NeurIPS 2021, arXiv:2103.00673
(inventory S096; official code https://github.com/shengliu66/ConvNorm, ``models/prec_conv.py``).

ConvNorm normalises the *kernel* of a convolution, not its activations, using the convolution's structure in the
Fourier domain (a preconditioner from convolutional sparse coding). For output channel i with kernels a_i1 .. a_iC
(one per input channel) the layer's map is A_i = [C(a_i1) ... C(a_iC)] (C(a): the circulant matrix of a). The
preconditioner P_i = (sum_j C(a_ij) C(a_ij)^T)^(-1/2) is itself circulant, diagonal in the Fourier basis with entries
v_i(f) = (sum_j |F a_ij(f)|^2)^(-1/2), and makes every output channel an isometry: (P_i A_i)(P_i A_i)^T = I
("channel-wise isometry"). Each channel's operator then has spectral norm 1 and the layer's is at most
sqrt(C_out), whatever the kernel's scale: the layer-wise spectral norm (Lipschitz constant) is controlled.

The unit (``conv`` slot: it replaces conv -> norm -> act), as the official ``PreConv``:

1. the k x k convolution with full padding (k - 1): the linear convolution, which equals the circular one on the
   zero-padded (H + k - 1) x (W + k - 1) grid;
2. the preconditioning: multiply its 2-D FFT (per output channel) by v_i(f), computed from the kernel zero-padded
   to that grid, and transform back;
3. crop to the "same" output (remove k - 1 - p rows/columns on each side, p = (k - 1) // 2), then apply the stride
   by subsampling;
4. the learned affine transform: a per-channel (depthwise) k x k convolution with bias, the paper's r_i * (.) + b_i
   that plays BN's gamma / beta (``affine``; official default True);
5. ``norm`` (official ``bn=True``: BatchNorm after ConvNorm) and ``act``.

Facts from the official code: the preconditioner is computed from the detached weights (no gradient flows through
v; ``detach=True``; ``detach=False`` backpropagates through it), the FFT is unnormalised, and the affine conv keeps
PyTorch's default init (:meth:`ConvNormUnit.init_weights` re-applies it after a backbone's generic init). v is
computed in at least float32 (FFTs have no bf16 kernel on CPU) with ``eps`` added under the root (official: none;
1e-8 keeps an all-zero kernel finite).

Differs from the official code: in eval mode the official layer uses a running average of v (updated each training
step, averaging factor ramped down by a cosine over 40,000 steps to a floor of 0.01). v depends only on the weights,
not on the data, so here v is always computed from the current weights; the running average would also tie the layer
to one input resolution (v has one value per frequency of the grid), which the backbones' variable input sizes do
not allow. At the end of training, when the weights change slowly, the two agree.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.common.layers import make_act, make_norm
from blockzoo.checks import check_counts, check_groups, check_odd, check_positive
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["ConvNormUnit", "kernel_preconditioner"]

_TEST = "tests/blocks/conv/test_convnorm.py"


def kernel_preconditioner(weight: torch.Tensor, size: tuple[int, int], eps: float = 1e-8) -> torch.Tensor:
    """v_i(f) = (sum_j |F a_ij(f)|^2 + eps)^(-1/2) for a kernel (O, I, kh, kw) zero-padded to ``size``:
    (O, H, W // 2 + 1), the one-sided (``rfft2``) frequencies; at least float32."""
    spectrum = torch.fft.rfft2(weight.to(torch.promote_types(weight.dtype, torch.float32)), s=size)
    return torch.rsqrt(spectrum.abs().square().sum(dim=1) + eps)


class ConvNormUnit(nn.Module):
    """ConvNorm's k x k conv -> Fourier preconditioning -> depthwise affine -> norm -> act (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1,
                 norm="bn", act="relu", *, kernel_size: int = 3, affine: bool = True, detach: bool = True,
                 eps: float = 1e-8):
        super().__init__()
        out_channels = out_channels or in_channels
        check_counts("convnorm", in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups,
                     kernel_size=kernel_size)
        check_odd(kernel_size, "kernel_size", owner="convnorm")
        check_positive(eps, "eps", owner="convnorm")
        check_groups(in_channels, out_channels, groups, owner="convnorm")
        self.in_channels, self.out_channels, self.stride, self.groups = in_channels, out_channels, stride, groups
        self.kernel_size, self.detach, self.eps = kernel_size, detach, float(eps)
        self.crop = kernel_size - 1 - (kernel_size - 1) // 2   # rows/cols of the full conv beyond the "same" output
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)   # nn.Conv2d's default (the official layer is a _ConvNd)
        self.affine = (nn.Conv2d(out_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                                 groups=out_channels, bias=True) if affine else nn.Identity())
        self.norm = make_norm(norm, out_channels) if norm not in (None, "none") else nn.Identity()
        self.act = make_act(act) if act not in (None, "none") else nn.Identity()

    def init_weights(self) -> None:
        """The affine kernel keeps PyTorch's default init (official); the main kernel follows the host's init."""
        if isinstance(self.affine, nn.Conv2d):
            self.affine.reset_parameters()

    def precondition(self, y: torch.Tensor) -> torch.Tensor:
        """Multiply each output channel of ``y`` (N, O, H, W; a circular convolution's output on that grid) by
        v_i(f) in the Fourier domain; at least float32 inside, ``y``'s dtype out."""
        w = self.weight.detach() if self.detach else self.weight
        size = (y.shape[-2], y.shape[-1])
        v = kernel_preconditioner(w, size, self.eps)
        out = torch.fft.irfft2(torch.fft.rfft2(y.to(v.dtype)) * v, s=size)
        return out.to(y.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        y = self.precondition(F.conv2d(x, self.weight, None, 1, k - 1, 1, self.groups))
        c = self.crop
        if c:
            y = y[..., c:-c, c:-c]
        if self.stride > 1:
            y = y[..., ::self.stride, ::self.stride]
        return self.act(self.norm(self.affine(y)))


@register_block(
    "convnorm", slot="conv", paper=papers.CONVNORM, family="convnorm",
    summary="ConvNorm: conv whose output is preconditioned in the Fourier domain (channel-wise isometric kernel), "
            "then a depthwise affine conv, norm, act",
    requires=Requires(keeps_channels=False, stride=True),
    claims=(
        Claim("channel-wise isometry: the preconditioned map of every output channel satisfies A_i A_i^T = I",
              f"{_TEST}::test_channelwise_isometry"),
        Claim("the layer's spectral norm is at most sqrt(C_out) and does not grow with the kernel's scale, while the "
              "plain conv's does", f"{_TEST}::test_spectral_norm_bounded_and_scale_free"),
        Claim("the preconditioned conv equals the official construction: full conv, FFT filter, crop, stride",
              f"{_TEST}::test_matches_explicit_circulant_preconditioning"),
        Claim("ConvNorm lowers the layer-wise spectral norm and improves robustness to input noise (CIFAR in the "
              "paper; here a small CNN on Fashion-MNIST)", "benchmarks/claims/norm_convnorm.py",
              status="measured"),
    ),
    notes="affine = the learned depthwise k x k conv (official default); norm = the BN after it (official bn=True); "
          "detach = no gradient through the preconditioner (official). Eval mode recomputes the preconditioner "
          "from the weights (the official code keeps a running average; see the module docstring).",
    usage='model = create_model("resnet20", conv="convnorm")',
)
def convnorm(in_channels: int, out_channels: int | None = None, stride: int = 1, groups: int = 1, norm="bn",
             act="relu", kernel_size: int = 3, affine: bool = True, detach: bool = True,
             eps: float = 1e-8) -> nn.Module:
    return ConvNormUnit(in_channels, out_channels, stride, groups, norm, act, kernel_size=kernel_size, affine=affine,
                        detach=detach, eps=eps)
