"""Claim run, S001 (Zhu et al., "Hyper-Connections", ICLR 2025, arXiv:2409.19606; :data:`blockzoo.papers.
HYPER_CONNECTIONS`), in the setting the paper's vision experiments use: a Pre-Norm ViT with one hyper-connection per
attention / MLP sub-layer (the paper's vision experiments train ViTs on ImageNet and report HC above the residual
baseline; its text could not be read here: the models, the expansion rate 2 of its ViT runs and dynamic HC as its
default variant are as recalled).

CPU scale: ``vit_tiny_patch4_32`` shrunk through its options (width 64, depth 6, 4 heads, MLP ratio 4, 7 x 7 patches
on the 28 x 28 Fashion-MNIST images: 16 patch tokens and the class token) with the ``residual`` connection vs
``hyper_connection(n=2, dynamic=True)``; the same initial weights per seed for everything but the connections (HC
adds about 1.5 % parameters, recorded), the same recipe for both (:func:`connection_common.fit`: AdamW lr 1e-3, weight
decay 0.05, cosine, no warm-up or augmentation: DeiT's optimizer, not its full recipe; batch 64 for more steps in
the budget; an earlier SGD run at 2,500 images left both models at ~52%); the static connection
weights are not weight-decayed (the trainer's default grouping). ``n = 4`` does not fit the budget: in a model this
small the streams' element-wise work about doubles a training step already at ``n = 2``. Unlike the ResNet run
(``connection_hyper.py``) the ViT has the final LayerNorm that removes the ``n`` of the streams' sum, as in the paper.
The paper's regime (ImageNet, 300 epochs, 86M+ parameters) is far from this one, so a null result here says little
about it.

Rule: ``connection_hyper.RULE`` (paired by seed on the final test accuracy: reproduced if HC - residual > 0 with
paired t-test p < 0.05; not reproduced if the mean difference is <= 0; else inconclusive).

Usage: ``python benchmarks/claims/connection_hyper_vit.py`` (the recorded budget), ``--smoke`` (seconds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from blockzoo import create_model, papers
from blockzoo.report.stats import detectable_difference, mean_std
from blockzoo.report.verdicts import write_verdict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection_common import add_options, load, train_variants  # noqa: E402
from connection_hyper import RULE, verdict_of  # noqa: E402

NAME = "connection_hyper_vit"
MODEL = "vit_tiny_patch4_32"
VIT = dict(embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0, patch_size=7)
VARIANTS = {"residual": "residual", "hc": "hyper_connection(n=2, dynamic=True)"}


def _vit(tr, connection: str, smoke: bool) -> torch.nn.Module:
    size, patch = (16, 4) if smoke else (28, VIT["patch_size"])   # the smoke run's synthetic images are 16 x 16
    return create_model(MODEL, num_classes=tr.num_classes, in_chans=tr.in_chans, img_size=size,
                        connection=connection, **{**VIT, "patch_size": patch})


def _recipe(a: argparse.Namespace) -> str:
    return (f"SGD momentum 0.9 lr {a.lr} wd 5e-4" if a.optimizer == "sgd" else
            f"AdamW lr {a.lr} wd 0.05, warm-up 0")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, subset=4000, epochs=4, seeds=3, lr=1e-3)
    p.set_defaults(batch_size=64, optimizer="adamw")
    a = p.parse_args(argv)
    tr, te = load(a)
    res, params = train_variants(a, tr, te, VARIANTS, lambda c: _vit(tr, c, a.smoke), MODEL)
    acc = {k: [r["test_acc"] for r in v] for k, v in res.items()}
    verdict, t = verdict_of(acc["hc"], acc["residual"])
    det = detectable_difference(t.std_diff, t.n)

    def cell(key: str) -> str:
        loss = mean_std([r["test_loss"] for r in res[key]])
        return "acc {:.4f} ± {:.4f}, loss {:.4f} ± {:.4f}".format(*mean_std(acc[key]), *loss)

    summary = (f"ViT test {cell('hc')} with DHC n=2 vs {cell('residual')} residual: HC - residual "
               f"{t.mean_diff:+.4f} ± {t.std_diff:.4f} (p {t.p_value if t.p_value is None else round(t.p_value, 4)}, "
               f"detectable {det and round(det, 4)}); params {params['hc']} vs {params['residual']}")
    write_verdict(
        NAME, paper=papers.HYPER_CONNECTIONS, block="hyper_connection",
        claim="in a Pre-Norm ViT (one HC per attention / MLP sub-layer) hyper-connections beat residual connections "
              "at (almost) equal parameters",
        verdict="inconclusive" if a.smoke else verdict, summary=("SMOKE RUN: " if a.smoke else "") + summary,
        budget=f"{a.data} {len(tr)} train / {len(te)} test images at 28 x 28, {MODEL} with {VIT}, residual vs "
               f"{VARIANTS['hc']}, {a.epochs} epochs, batch {a.batch_size}, {_recipe(a)} cosine (no weight decay "
               f"on the static HC weights), fp32, {a.seeds} seeds",
        rule=RULE, results={"runs": res, "params": params, "vit": VIT}, out_dir=a.out_dir)
    print(f"{NAME}: {verdict}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
