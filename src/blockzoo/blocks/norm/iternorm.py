"""Iterative Normalization (IterNorm): Huang, Zhou, Zhu, Liu & Shao, "Iterative Normalization: Beyond Standardization
towards Efficient Whitening", CVPR 2019, arXiv:1904.03441 (official PyTorch code
https://github.com/huangleiBuaa/IterNorm-pytorch, ``extension/normailzation/iterative_normalization.py``; the paper
is the baseline of the inventory's S090, which has no id of its own).

Batch whitening of groups of channels by Newton's iterations instead of an eigen-decomposition. For each group of d
channels, over the m = N x H x W positions of the batch (paper Algorithm 1):

1. centre: x_c = x - mean(x);
2. covariance Sigma = x_c x_c^T / m + eps I;
3. trace-normalise: Sigma_N = Sigma / tr(Sigma) (so that the iteration converges: ||I - Sigma_N||_2 < 1);
4. P_0 = I, P_{k+1} = (3 P_k - P_k^3 Sigma_N) / 2 for k < T (Newton's iteration towards Sigma_N^{-1/2});
5. whitening matrix W = P_T / sqrt(tr(Sigma)) (-> Sigma^{-1/2} as T grows), output x_hat = W x_c;
6. per-channel affine y = gamma * x_hat + beta (as BatchNorm).

In training the running mean and the running whitening matrix W are updated with ``momentum`` (the official code
averages W itself, not Sigma); in eval mode x_hat = W_running (x - mean_running). T = 5 is the paper's choice (and the
official default); a finite T stops short of full whitening on purpose (the paper's "progressive" whitening: the
larger eigen-directions are normalised first), so the output covariance approaches I only as T grows.

Numerical note (a property of the paper's iteration, not of this port): the uncoupled Newton step amplifies rounding
errors off the eigenbasis of Sigma by |1 - (r + r^2) / 2| per step, r = sqrt(lambda_i / lambda_j), i.e. whenever the
covariance's condition number exceeds about 2.4. At the paper's T = 5 the errors stay far below the values; with
many iterations (T of 15 or more in float32) an ill-conditioned group diverges to inf/NaN
(``tests/blocks/norm/test_iternorm.py`` checks convergence on well-conditioned data, in float64).

Groups: ``group_size`` = d, the channels whitened together (paper: "group size"; 64 in its ImageNet ResNets and the
official scripts, ``num_channels=64``). A layer with C <= d channels is one group of C. When d does not divide C, the
channels are split into groups of d followed by one smaller group of the remaining channels, as the official
``iterative_normalization_FlexGroup.py`` does (the official main module instead halves d until it divides C); with
``group_size=1`` IterNorm is exactly BatchNorm's per-channel standardisation (biased batch variance).

Differences from the official code: gradients come from autograd through the T iterations (the official
hand-written backward computes the same derivative, paper eq. 9-12); the running mean is stored per channel (C,), the
whitening matrices as ``running_wm`` (groups of d) and ``running_wm_rest`` (the remainder group).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_int, check_positive
from blockzoo.errors import ConfigError
from blockzoo.registry import Claim, register_block

__all__ = ["IterNorm", "newton_whitening"]

_TEST = "tests/blocks/norm/test_iternorm.py"


def newton_whitening(xc: torch.Tensor, T: int, eps: float) -> torch.Tensor:
    """Whitening matrices (g, d, d) of centred groups ``xc`` (g, d, m) after T Newton iterations (module docstring)."""
    d = xc.shape[1]
    eye = torch.eye(d, dtype=xc.dtype, device=xc.device)
    sigma = torch.matmul(xc, xc.transpose(1, 2)) / xc.shape[-1] + eps * eye
    trace = sigma.diagonal(dim1=1, dim2=2).sum(-1).view(-1, 1, 1)
    sigma_n = sigma / trace
    p = eye.expand_as(sigma)
    for _ in range(T):
        p = 1.5 * p - 0.5 * torch.matmul(torch.matrix_power(p, 3), sigma_n)
    return p / trace.sqrt()


MAX_T = 100   # more Newton iterations than this only costs time (and diverges in float32: see above)

class IterNorm(nn.Module):
    """Group-wise batch whitening by T Newton iterations, NCHW in and out (module docstring).

    Args:
        channels: C.
        group_size: d, channels whitened together (the last group takes the remainder when d does not divide C).
        T: Newton iterations.
        eps: added to the covariance's diagonal.
        momentum: update rate of the running mean and running whitening matrix, in (0, 1].
        affine: learnable per-channel scale and shift after the whitening.
    """

    def __init__(self, channels: int, group_size: int = 64, T: int = 5, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__()
        check_int(channels, "channels", min_value=1, owner="iternorm")
        check_int(group_size, "group_size", min_value=1, owner="iternorm")
        check_int(T, "T", min_value=1, owner="iternorm")
        if T > MAX_T:
            raise ConfigError(f"iternorm: T = {T} Newton iterations is more than {MAX_T}; the iteration converges in a "
                              f"few steps (the paper uses 5) and diverges in float32 beyond ~15 on ill-conditioned "
                              f"groups: use T <= {MAX_T}")
        check_positive(eps, "eps", owner="iternorm")
        if not 0.0 < momentum <= 1.0:
            raise ConfigError(f"iternorm: momentum must be in (0, 1], got {momentum}; pick e.g. the paper's 0.1")
        self.channels, self.T, self.eps, self.momentum = channels, T, eps, momentum
        self.group_size = d = min(group_size, channels)
        full, rest = divmod(channels, d)
        # (number of groups, group width, buffer name): the groups of d, then the remainder group if any
        self.parts = [(full, d, "running_wm")] + ([(1, rest, "running_wm_rest")] if rest else [])
        self.register_buffer("running_mean", torch.zeros(channels))
        for g, width, name in self.parts:
            self.register_buffer(name, torch.eye(width).repeat(g, 1, 1))
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def whiten(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """x_hat: the whitened input before the affine (batch statistics in training, running ones in eval).

        ``stats``: in training, estimate the mean and whitening matrix from this tensor (N', C, H', W') instead of
        ``x`` (e.g. a sub-sampled view of it); the result always whitens all of ``x``."""
        flat = x.transpose(0, 1).reshape(self.channels, -1)      # (C, m), m = N * H * W
        flat_stats = flat if stats is None else stats.transpose(0, 1).reshape(self.channels, -1)
        outs, start = [], 0
        for g, d, name in self.parts:
            part = flat[start:start + g * d].reshape(g, d, -1)
            running_wm = getattr(self, name)
            if self.training:
                part_stats = flat_stats[start:start + g * d].reshape(g, d, -1)
                mean = part_stats.mean(-1, keepdim=True)
                xc = part - mean
                wm = newton_whitening(xc if stats is None else part_stats - mean, self.T, self.eps)
                with torch.no_grad():
                    self.running_mean[start:start + g * d].lerp_(mean.reshape(-1).to(self.running_mean.dtype),
                                                                 self.momentum)
                    running_wm.lerp_(wm.to(running_wm.dtype), self.momentum)
            else:
                xc = part - self.running_mean[start:start + g * d].view(g, d, 1)
                wm = running_wm
            outs.append(torch.matmul(wm.to(xc.dtype), xc).reshape(g * d, -1))
            start += g * d
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.reshape(self.channels, x.shape[0], -1).transpose(0, 1).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.whiten(x)
        if self.weight is None:
            return x_hat
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.channels}, group_size={self.group_size}, T={self.T}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.weight is not None}")


@register_block(
    "iternorm", slot="norm", paper=papers.ITERNORM, family="iternorm",
    summary="IterNorm: group-wise batch whitening by T Newton iterations on the trace-normalised covariance",
    claims=(
        Claim("with enough iterations the output covariance of each group is the identity (whitening)",
              f"{_TEST}::test_output_covariance_identity"),
        Claim("P_{k+1} = (3 P_k - P_k^3 Sigma_N) / 2, W = P_T / sqrt(tr Sigma): hand-computed 2x2 case",
              f"{_TEST}::test_newton_steps_by_hand"),
        Claim("group size 1 is BatchNorm's per-channel standardisation", f"{_TEST}::test_group_size_one_is_batchnorm"),
        Claim("eval mode whitens with the running mean and running whitening matrix",
              f"{_TEST}::test_eval_uses_running_matrix"),
        Claim("gradients through the Newton iterations are exact (gradcheck)", f"{_TEST}::test_gradcheck"),
    ),
    notes="group_size = channels per whitening group (paper/official ImageNet 64; the last group takes the "
          "remainder, as the official FlexGroup variant); T = Newton iterations (paper 5).",
)
def iternorm(channels: int, group_size: int = 64, T: int = 5, eps: float = 1e-5, momentum: float = 0.1,
             affine: bool = True) -> nn.Module:
    return IterNorm(channels, group_size=group_size, T=T, eps=eps, momentum=momentum, affine=affine)
