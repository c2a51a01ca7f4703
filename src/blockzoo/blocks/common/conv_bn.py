"""``ConvBN``: a bias-free conv followed by BatchNorm, foldable into one biased conv for deployment.

The ``Conv2d_BN`` unit of the LeViT / EfficientViT / RepViT / LSNet / FFNet official code (children ``c`` and ``bn``,
so official checkpoints map key for key). Its :meth:`ConvBN.fuse` is the ``fuse()`` hook of
:func:`blockzoo.deploy.reparameterize`. The slot-driven unit (any ``norm`` / ``act`` slot value) is
:class:`blockzoo.blocks.common.layers.ConvNormAct`; use ``ConvBN`` where the paper's block is re-parameterised.
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo.blocks.common.layers import out_size
from blockzoo.deploy.reparam import fuse_conv_bn

__all__ = ["ConvBN"]


class ConvBN(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d``; children ``c`` and ``bn``.

    ``bn_weight_init`` is the BN scale at init (0 zero-initialises a residual branch's output; re-applied by
    :meth:`init_weights` after a backbone's generic init). :meth:`fuse` returns the equivalent biased ``nn.Conv2d``
    (eval mode: uses the BN running statistics).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.c = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.bn_weight_init = float(bn_weight_init)
        self.init_weights()

    def init_weights(self) -> None:
        """BN scale = ``bn_weight_init``, shift = 0."""
        nn.init.constant_(self.bn.weight, self.bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def fuse(self) -> nn.Conv2d:
        """The single conv (with bias) equal to this unit in eval mode (same device and dtype)."""
        return fuse_conv_bn(self.c, self.bn)

    def out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        return out_size(size, self.c.stride[0], self.c.kernel_size[0], self.c.padding[0])
