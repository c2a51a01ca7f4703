"""Claim runs (S096, Liu et al. 2021): ConvNorm (``conv="convnorm"``) versus the plain conv unit (``conv3x3``: conv ->
BN -> ReLU) in a small 3-unit CNN on a Fashion-MNIST subset, same budget and seeds. Two claims of the paper:

* ConvNorm lowers the layer-wise spectral norm: after training, the spectral norm of each layer's linear kernel map
  (ConvNorm: conv + Fourier preconditioning, without its affine conv; baseline: the conv), on that layer's input
  size with zero padding, by power iteration, averaged over the 3 layers (recorded too: the whole eval-mode
  layer, affine + BN included, whose scale the baseline's BN sets: the baseline conv's own norm is arbitrary
  because BN divides it out);
* ConvNorm improves robustness to input noise: test accuracy with Gaussian pixel noise (std ``--noise`` on the 0..1
  pixel scale) added to every test image.

Verdict rule: ``norm_common.RULE`` (for the spectral norm with the sign flipped: lower is the claimed direction).

    python benchmarks/claims/norm_convnorm.py            # the recorded budget (~2 min on 2 idle cores)
    python benchmarks/claims/norm_convnorm.py --smoke    # seconds
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from norm_common import RULE, accuracy, add_options, fashion_subsets, paired_verdict, parse, train  # noqa: E402

from blockzoo import create_block, papers  # noqa: E402
from blockzoo.blocks.conv.convnorm import ConvNormUnit  # noqa: E402
from blockzoo.report.verdicts import write_verdict  # noqa: E402

WIDTHS, STRIDES = (16, 32, 64), (1, 2, 2)


def small_cnn(conv: str) -> nn.Sequential:
    layers, cin = [], 1
    for c, s in zip(WIDTHS, STRIDES):
        layers.append(create_block(conv, cin, out_channels=c, stride=s))
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def kernel_map(unit: nn.Module) -> nn.Module:
    """The linear part whose spectral norm the paper bounds: ConvNorm's conv + preconditioning, or the plain conv."""
    if isinstance(unit, ConvNormUnit):
        m = copy.deepcopy(unit)
        m.affine, m.norm, m.act = nn.Identity(), nn.Identity(), nn.Identity()
        return m
    return unit.conv


def whole_layer(unit: nn.Module) -> nn.Module:
    """The unit in eval mode without its activation: an affine map (the norms use their running statistics)."""
    m = copy.deepcopy(unit).eval()
    m.act = nn.Identity()
    return m


def spectral_norm(f: nn.Module, shape: tuple[int, ...], iters: int) -> float:
    """Largest singular value of the affine map ``f`` (its linear part x -> f(x) - f(0)) on inputs of ``shape``, by
    power iteration on J^T J."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f0 = f(torch.zeros(shape))
    sq = 0.0
    for _ in range(iters):
        x = (x / x.norm()).requires_grad_(True)
        y = f(x) - f0
        (g,) = torch.autograd.grad(y, x, y)
        sq, x = g.norm().item(), g.detach()
    return sq ** 0.5


def layer_norms(model: nn.Sequential, part, iters: int, size: int = 28) -> list[float]:
    out, cin = [], 1
    for unit, c, s in zip(model, WIDTHS, STRIDES):
        out.append(spectral_norm(part(unit), (1, cin, size, size), iters))
        cin, size = c, -(-size // s)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(p, train=600, test=500, epochs=2, lr=0.05, weight_decay=5e-4)
    p.add_argument("--noise", type=float, default=0.2, help="std of the Gaussian pixel noise (0..1 pixel scale)")
    p.add_argument("--iters", type=int, default=30, help="power iterations per spectral norm")
    a = parse(p, argv, iters=3)
    train_set, test_set = fashion_subsets(a.train, a.test)
    sigma = a.noise / test_set.std[0]   # pixel-scale noise in the loader's normalised units

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + sigma * torch.randn_like(x)

    res: dict[str, dict[str, list]] = {v: {"clean": [], "noisy": [], "spectral": [], "layers": [],
                                                           "whole_layers": []}
                                       for v in ("conv3x3", "convnorm")}
    for seed in range(a.seeds):
        for conv, r in res.items():
            torch.manual_seed(seed)
            model = small_cnn(conv)
            train(model, train_set, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                  weight_decay=a.weight_decay, seed=seed)
            r["clean"].append(accuracy(model, test_set))
            r["noisy"].append(accuracy(model, test_set, noisy, seed=seed))
            r["layers"].append(layer_norms(model, kernel_map, a.iters))
            r["whole_layers"].append(layer_norms(model, whole_layer, a.iters))
            r["spectral"].append(sum(r["layers"][-1]) / len(WIDTHS))
            print(f"seed {seed} {conv}: clean {r['clean'][-1]:.4f}, noisy {r['noisy'][-1]:.4f}, layer spectral "
                  f"norms {[round(s, 3) for s in r['layers'][-1]]} (whole eval-mode layers "
                  f"{[round(s, 3) for s in r['whole_layers'][-1]]})", flush=True)
    budget = (f"3-unit CNN (widths {WIDTHS}, strides {STRIDES}, avg pool, linear), Fashion-MNIST {a.train} train / "
              f"{a.test} test images, {a.epochs} epochs, batch {a.batch_size}, SGD Nesterov lr {a.lr} cosine, wd "
              f"{a.weight_decay} on weights, fp32 CPU, {a.seeds} seeds; noise std {a.noise} (pixel scale)")
    cn, base = res["convnorm"], res["conv3x3"]
    neg = [-s for s in cn["spectral"]], [-s for s in base["spectral"]]
    whole = [sum(sum(w) / len(WIDTHS) for w in r["whole_layers"]) / a.seeds for r in (cn, base)]
    verdict, line, stats = paired_verdict(*neg, " (negated mean layer spectral norm, convnorm vs conv3x3)")
    write_verdict(
        "norm_convnorm_spectral", paper=papers.CONVNORM, block="convnorm",
        claim="ConvNorm reduces the layer-wise spectral norm of the convolution's weight operator",
        verdict=verdict, summary=f"mean layer spectral norm {sum(cn['spectral']) / a.seeds:.3f} (convnorm) vs "
                                 f"{sum(base['spectral']) / a.seeds:.3f} (conv); " + line +
                                 f"; whole eval-mode layers incl. affine + BN: {whole[0]:.3f} vs {whole[1]:.3f}",
        budget=budget, rule=RULE + " on the negated mean layer spectral norm (lower is the claimed direction)",
        results={"convnorm": cn, "conv3x3": base, "paired": stats}, out_dir=a.out_dir)
    print(f"spectral: {verdict}: {line}")
    verdict, line, stats = paired_verdict(cn["noisy"], base["noisy"], " accuracy under noise (convnorm vs conv3x3)")
    path = write_verdict(
        "norm_convnorm_noise", paper=papers.CONVNORM, block="convnorm",
        claim="ConvNorm improves robustness to input noise corruption (higher accuracy on noisy test images)",
        verdict=verdict, summary=line + f"; clean accuracy {sum(cn['clean']) / a.seeds:.4f} vs "
                                        f"{sum(base['clean']) / a.seeds:.4f}",
        budget=budget, rule=RULE + " on the accuracy with Gaussian pixel noise",
        results={"convnorm": cn, "conv3x3": base, "paired": stats}, out_dir=a.out_dir)
    print(f"noise: {verdict}: {line}\n-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
