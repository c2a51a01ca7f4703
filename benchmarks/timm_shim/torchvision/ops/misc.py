"""``FrozenBatchNorm2d`` as in torchvision.ops.misc: BatchNorm2d with fixed statistics and affine parameters."""
import torch
import torch.nn as nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose batch statistics and affine parameters are buffers (never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
