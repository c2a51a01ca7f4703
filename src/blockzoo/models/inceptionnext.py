"""InceptionNeXt (Yu et al., "InceptionNeXt: When Inception Meets ConvNeXt", CVPR 2024, arXiv:2303.16900 [S014]).

Configuration of :class:`blockzoo.models.metaformer.MetaFormer` following the official ``models/inceptionnext.py``
(sail-sg/inceptionnext): stem = 4x4/4 conv + BatchNorm; downsampling = BatchNorm -> 2x2/2 conv; MetaNeXt block =
``inception_dw`` mixer -> **BatchNorm** -> MLP (GELU; ``mlp_ratios=(4, 4, 4, 3)``: the last stage uses 3x) -> layer
scale (1e-6) -> stochastic depth -> residual; no final norm before the head; head = the official ``MlpHead``: GAP ->
Linear(C, 3C) -> GELU -> LayerNorm(3C, eps 1e-6) -> dropout -> Linear(3C, classes) (``head_hidden_ratio=3``; for
tiny it holds 4.7M of the 28M parameters). Mixer: ``inception_dw`` (3x3 square, 1x11/11x1 bands, branch ratio 1/8);
``inception_next_atto`` uses band 9 and branch ratio 1/4 (official ``inceptionnext_atto``, fidelity.md §4.1).
Init: trunc-normal(0.02) convs/linears, zero biases (official ``_init_weights``).

Slots: ``mixer``, ``norm`` (``bn``), ``act`` (``gelu``), ``attn`` (``none``), ``head`` (``avg`` pooling before the MLP
head). Small images: ``stem="small"`` (+ ``img_size=``), see ``metaformer``.

The paper's and our exact numbers are in the registry (``blockzoo info <model>``, ``docs/catalog.md``); paper
figures: the official README and timm's results CSV. Params exact (asserted by tests/models/test_inceptionnext.py);
MACs with
``blockzoo.profile.counting.count_macs`` (convs + linears only; BN, GELU, LayerNorm and elementwise ops uncounted).
InceptionNeXt-atto's 4.2M (README) is given to one decimal, i.e. 4.15M-4.25M; our 4,156,520 is inside that interval.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blockzoo import papers
from blockzoo.models.metaformer import MetaFormer, metaformer_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"mixer": "inception_dw", "norm": "bn", "act": "gelu", "attn": "none", "head": "avg",
         "connection": "residual"}

INCEPTIONNEXT = dict(block="metanext", mlp_ratios=(4, 4, 4, 3), ls_init_value=1e-6, stem="patch", downsample="patch",
                     head_hidden_ratio=3.0)

# name: (depths, dims, mixer, paper params, paper MACs)
CONFIGS = {
    "inception_next_atto": ((2, 2, 6, 2), (40, 80, 160, 320), "inception_dw(band_kernel_size=9, branch_ratio=0.25)",
                            4.2e6, 0.51e9),
    "inception_next_tiny": ((3, 3, 9, 3), (96, 192, 384, 768), "inception_dw", 28.06e6, 4.19e9),
    "inception_next_small": ((3, 3, 27, 3), (96, 192, 384, 768), "inception_dw", 49.37e6, 8.36e9),
}

_PARAMS = {
    "inception_next_atto": 4_156_520,
    "inception_next_tiny": 28_055_680,
    "inception_next_small": 49_374_016,
}

# MACs of our builds at 224 px (blockzoo.profile.counting.count_macs); asserted by the slow tests
_MACS = {
    "inception_next_atto": 503_035_040,
    "inception_next_tiny": 4_188_634_272,
    "inception_next_small": 8_355_682_080,
}

_T = "tests/models/test_inceptionnext.py::"


def _paper_spec(name: str, *extra_claims: Claim) -> dict[str, Any]:
    """register_model arguments of a paper InceptionNeXt (numbers from the tables above)."""
    depths, dims, mixer, pp, pm = CONFIGS[name]
    return dict(
        family="inceptionnext", slots={**SLOTS, "mixer": mixer}, paper=papers.INCEPTIONNEXT, paper_params=int(pp),
        paper_macs=pm, reference={"params_1000cls": _PARAMS[name], "macs_224": _MACS[name]},
        summary=f"InceptionNeXt {name.split('_')[2]}: depths {depths}, dims {dims}, Inception dw mixer, BN, MLP head",
        claims=(Claim(f"{_PARAMS[name]:,} parameters (paper/timm: {pp / 1e6:.2f}M)", _T + "test_param_counts"),
                Claim(f"{pm / 1e9:.2f} GMACs at 224", _T + "test_macs_tiny_224"), *extra_claims),
        notes="head_hidden_ratio=None gives a plain FC head instead of the MLP head.")


def _entry(name: str) -> Callable[..., MetaFormer]:
    depths, dims = CONFIGS[name][:2]
    return metaformer_entry(name, dict(INCEPTIONNEXT, depths=depths, dims=dims),
                            doc=f"InceptionNeXt ({name}): depths {depths}, dims {dims}")


register_model("inception_next_atto", **_paper_spec("inception_next_atto"))(_entry("inception_next_atto"))
register_model("inception_next_tiny", **_paper_spec(
    "inception_next_tiny",
    Claim("1.6x the training throughput of ConvNeXt-T (paper: A100, full precision); our CPU ratio is recorded, not "
          "asserted", "benchmarks/results/backbone_profiles.md", status="measured")))(_entry("inception_next_tiny"))
register_model("inception_next_small", **_paper_spec("inception_next_small"))(_entry("inception_next_small"))
