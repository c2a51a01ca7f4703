"""Revisited BatchNorm initialisation: Davis & Frank, "Revisiting Batch Norm Initialization", ECCV 2022,
arXiv:2110.13989 (inventory S093; official code https://github.com/osu-cvl/revisiting-bn-init, ``batch_norm.py``,
``weight_decay_and_learning_rate.py``, ``networks.py``).

The paper observes that BN's learned scale gamma and shift beta barely move from their initialisation (1 and 0) and
that the normalised values can be too large; it proposes two changes to a plain BatchNorm2d:

* **initial scale** gamma_0 < 1 instead of 1 (beta_0 = 0 as usual): ``weight_init``, default 0.1 (the official
  ``ScaleBatchNorm2d(bn_weight=0.1)`` and the README's recommended starting value);
* **reduced learning rate of the scale**: the learning rate of every BN scale is the base rate divided by a constant
  c (alpha_gamma = alpha / c, still following the schedule), and the scale gets no weight decay: ``lr_scale = 1 / c``,
  default 1 / 100 (the paper's and the official c = 100).

The forward pass is BatchNorm2d's, so the layer folds into a conv like any BN. The scale's learning rate is the
optimizer's business: the block declares it in ``param_lr_scale`` (``{"weight": lr_scale}``, a plain module attribute,
so it survives ``copy.deepcopy`` and ``.to()``), and the trainer's optimizer builder honours it
(:func:`blockzoo.train.trainer.param_lr_scales`: the scale gets its own group at ``lr * lr_scale``). blockzoo's trainer
puts 1-D parameters in the no-weight-decay group already.

Not here: the official ``networks.py`` also prepends an input-normalisation BN (gamma_0 = 0.1 * 0.58, frozen shift)
in place of the dataset's mean/std normalisation; that is a change to the data pipeline, not to a norm position.
"""
from __future__ import annotations

import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_input, check_positive
from blockzoo.registry import Claim, register_block

__all__ = ["ScaledInitBatchNorm2d"]

_TEST = "tests/blocks/norm/test_bn_init.py"


class ScaledInitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose scale starts at ``weight_init`` and declares a learning-rate multiplier ``lr_scale`` for it
    (``param_lr_scale = {"weight": lr_scale}``). :meth:`init_weights` re-applies the initial values, so they survive
    a backbone's generic init (which sets every BN scale to 1)."""

    def __init__(self, channels: int, weight_init: float = 0.1, lr_scale: float = 0.01, eps: float = 1e-5,
                 momentum: float = 0.1):
        check_positive(weight_init, "weight_init", owner="bn_init")
        check_positive(lr_scale, "lr_scale", owner="bn_init")
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight_init = float(weight_init)
        self.param_lr_scale = {"weight": float(lr_scale)}
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.constant_(self.weight, self.weight_init)
        nn.init.zeros_(self.bias)

    def _check_input_dim(self, input) -> None:   # BatchNorm2d's rank check, skipped while tracing (torch.fx)
        check_input(input, "bn_init")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_init={self.weight_init}, lr_scale={self.param_lr_scale['weight']}"


@register_block(
    "bn_init", slot="norm", paper=papers.BN_INIT, family="bn_init",
    summary="BatchNorm with the scale initialised to 0.1 and its learning rate divided by c = 100",
    claims=(
        Claim("the BN scale gamma is initialised to 0.1 (not 1) and the shift to 0, also after a model's generic init",
              f"{_TEST}::test_initial_scale_survives_model_init"),
        Claim("the learning rate of the BN scale is the base rate / c, c = 100 (only the scale, not the shift)",
              f"{_TEST}::test_scale_learning_rate_is_divided"),
        Claim("the forward pass is BatchNorm's: equal to nn.BatchNorm2d with the same scale and shift",
              f"{_TEST}::test_forward_is_batchnorm"),
        Claim("gamma_0 = 0.1 with the scale's lr / 100 changes resnet20's Fashion-MNIST accuracy "
              "(paper: statistically significant gains on CIFAR-10 and others)",
              "benchmarks/claims/norm_bn_init.py", status="measured"),
    ),
    notes="weight_init = gamma_0 (paper/official 0.1); lr_scale = 1 / c (c = 100), declared in the module's "
          "param_lr_scale, which the trainer's optimizer honours (blockzoo.train.trainer.param_lr_scales).",
    usage='model = create_model("resnet20", norm="bn_init")\nnorm = create_block("bn_init", 64, weight_init=0.2)',
)
def bn_init(channels: int, weight_init: float = 0.1, lr_scale: float = 0.01, eps: float = 1e-5,
            momentum: float = 0.1) -> nn.Module:
    return ScaledInitBatchNorm2d(channels, weight_init=weight_init, lr_scale=lr_scale, eps=eps, momentum=momentum)
