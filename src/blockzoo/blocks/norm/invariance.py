"""Invariance-imposing feature transform: Ye, Zhou, McKinney, Liu, Zhou & Zhdanov, "Exploiting Invariance in Training
Deep Neural Networks", AAAI 2022, arXiv:2103.16634 (inventory S095; no official code found).

**Reconstruction.** The paper's full text (its exact formulas, window sizes, sampling and defaults) could not be read
here; this block implements what its abstract states, and every concrete choice below is ours:

* "scale invariance with local statistics in the data, to align similar samples at diverse scales": each sample is
  divided by its local root-mean-square over all channels and a k x k spatial window (a local contrast
  normalisation, the visual-system mechanism the abstract alludes to),
  x_s = x / sqrt(avgpool_k(mean_c(x^2)) + eps), so that multiplying a sample by any a > 0 leaves x_s unchanged;
* "a GL(n)-invariance property with global statistics extracted from a batch, such that the gradient descent solution
  remains invariant under basis change": x_s is whitened with batch statistics (centring and decorrelation of the
  channels, in groups of ``group_size``, by IterNorm's Newton iterations,
  :func:`blockzoo.blocks.norm.iternorm.newton_whitening`); for whitened features an invertible change of basis
  x -> A x changes the output only by an orthogonal matrix (ZCA: Sigma_A^{-1/2} A = Q Sigma^{-1/2}, Q orthogonal),
  which the next linear layer absorbs and which gradient descent is equivariant to;
* "takes 5% of the computations of the underlying convolution layer": the covariance is estimated on every
  ``sample_stride``-th pixel of each axis (network deconvolution's sub-sampling, by the same first author), and the
  whitening groups are small. What this costs here, against a 3x3 conv C -> C, is measured with
  ``blockzoo.profile.count_macs`` (eval mode) and with torch's ``FlopCounterMode`` (training mode) in
  ``tests/blocks/norm/test_invariance.py::test_cost_vs_conv``: at C = 64 on 16 x 16 maps, 2.8% in eval and 3.6%
  in training (batch 32; matmul and conv MACs, blockzoo's counting convention).
* a per-channel affine transform follows (as in every norm block; our choice).

In eval mode the running mean and whitening matrices (momentum ``momentum``) replace the batch statistics; the local
scale is per sample, so it is the same in both modes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import papers
from blockzoo.blocks.norm.iternorm import IterNorm
from blockzoo.checks import check_int, check_odd, check_positive
from blockzoo.registry import Claim, register_block

__all__ = ["InvarianceTransform", "local_scale"]

_TEST = "tests/blocks/norm/test_invariance.py"


def local_scale(x: torch.Tensor, kernel_size: int, eps: float) -> torch.Tensor:
    """(N, 1, H, W) local RMS of each sample over all channels and a k x k window (borders: the window inside)."""
    energy = x.pow(2).mean(1, keepdim=True)
    return (F.avg_pool2d(energy, kernel_size, 1, kernel_size // 2, count_include_pad=False) + eps).sqrt()


class InvarianceTransform(nn.Module):
    """Local scale normalisation per sample, then batch whitening (groups of ``group_size``), then an affine.

    Args:
        channels: C.
        kernel_size: odd k of the local window of the scale statistics.
        group_size: channels whitened together (IterNorm's group size; the last group takes the remainder).
        T: Newton iterations of the whitening.
        sample_stride: the batch statistics use every ``sample_stride``-th pixel along H and W.
        eps: added to the local energy and to the covariance's diagonal.
        momentum: update rate of the running mean and whitening matrices.
    """

    def __init__(self, channels: int, kernel_size: int = 3, group_size: int = 16, T: int = 5, sample_stride: int = 2,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="invariance")
        check_odd(kernel_size, "kernel_size", owner="invariance")
        check_int(sample_stride, "sample_stride", min_value=1, owner="invariance")
        check_positive(eps, "eps", owner="invariance")
        self.kernel_size, self.sample_stride, self.eps = kernel_size, sample_stride, eps
        self.whitening = IterNorm(channels, group_size=group_size, T=T, eps=eps, momentum=momentum, affine=False)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x / local_scale(x, self.kernel_size, self.eps)
        s = self.sample_stride
        x_hat = self.whitening.whiten(xs, stats=xs[:, :, ::s, ::s] if s > 1 else None)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


@register_block(
    "invariance", slot="norm", paper=papers.INVARIANCE_TRANSFORM, family="invariance",
    summary="Invariance transform (reconstruction): per-sample local scale normalisation + batch GL(n) whitening",
    claims=(
        Claim("scale invariance: multiplying a sample by a > 0 leaves its output unchanged (reconstruction: local "
              "RMS over channels and a k x k window)", f"{_TEST}::test_per_sample_scale_invariance"),
        Claim("GL(n) invariance: an invertible channel mixing A changes the output only by an orthogonal matrix",
              f"{_TEST}::test_gl_n_invariance_up_to_rotation"),
        Claim("costs about 5% of the underlying 3x3 conv (paper); measured here at C = 64 with count_macs",
              f"{_TEST}::test_cost_vs_conv"),
        Claim("trains well with an initial learning rate of 1.0 (paper); measured here in resnet20 on a Fashion-MNIST "
              "subset against BN at lr 1.0 and at lr 0.1", "benchmarks/claims/norm_invariance_lr.py",
              status="measured"),
    ),
    notes="A reconstruction from the abstract (the paper's formulas could not be read): local scale over a k x k "
          "window, whitening in groups of group_size by IterNorm's Newton iterations, statistics on every "
          "sample_stride-th pixel.",
)
def invariance(channels: int, kernel_size: int = 3, group_size: int = 16, T: int = 5, sample_stride: int = 2,
               eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    return InvarianceTransform(channels, kernel_size=kernel_size, group_size=group_size, T=T,
                               sample_stride=sample_stride, eps=eps, momentum=momentum)
