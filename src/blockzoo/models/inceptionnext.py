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

Paper / official README and timm's results CSV vs ours, 1000 classes, 224 px. Params exact (asserted by
tests/test_metaformer.py); MACs with ``blockzoo.profile.counting.count_macs`` (convs + linears only; BN, GELU, LayerNorm
and elementwise ops uncounted):

==================== ========================== ============== ======= =========== ========== =======
model                params (paper)             params (ours)  diff    MACs paper  MACs ours  diff
==================== ========================== ============== ======= =========== ========== =======
inception_next_atto  4.2M (README)              4,156,520      -1.0% * 0.51G       0.503G     -1.4%
inception_next_tiny  28.06M (timm; paper 28M)   28,055,680     -0.02%  4.19G       4.189G     -0.03%
inception_next_small 49.37M (timm; paper 49M)   49,374,016     +0.01%  8.36G       8.356G     -0.05%
==================== ========================== ============== ======= =========== ========== =======

(* 4.2M is given to one decimal, i.e. 4.15M-4.25M; 4.157M is inside that interval.)
"""
from __future__ import annotations

from blockzoo import papers
from blockzoo.models.metaformer import metaformer_entry
from blockzoo.registry import Claim, register_model

SLOTS = {"mixer": "inception_dw", "norm": "bn", "act": "gelu", "attn": "none", "head": "avg"}

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

for _name, (_depths, _dims, _mixer, _pp, _pm) in CONFIGS.items():
    register_model(
        _name, family="inceptionnext", slots={**SLOTS, "mixer": _mixer}, paper=papers.INCEPTIONNEXT,
        paper_params=int(_pp), paper_macs=_pm,
        reference={"params_1000cls": _PARAMS[_name], "macs_224": _MACS[_name]},
        summary=f"InceptionNeXt {_name.split('_')[2]}: depths {_depths}, dims {_dims}, Inception dw mixer, BN, "
                f"MLP head",
        claims=(Claim(f"{_PARAMS[_name]:,} parameters (paper/timm: {_pp / 1e6:.2f}M)",
                      "tests/test_metaformer.py::test_param_counts"),
                Claim(f"{_pm / 1e9:.2f} GMACs at 224", "tests/test_metaformer.py::test_macs_tiny_224"))
        + ((Claim("1.6x the training throughput of ConvNeXt-T (paper: A100, full precision); our CPU ratio is "
                  "recorded, not asserted", "benchmarks/results/backbone_profiles.md", status="measured"),)
           if _name == "inception_next_tiny" else ()),
        notes="Options: drop_path_rate, drop_rate, ls_init_value, stem ('patch'|'small'), patch_size, img_size, "
              "mlp_layout ('linear'|'conv'), head_hidden_ratio (3; None = plain FC head).",
    )(metaformer_entry(_name, dict(INCEPTIONNEXT, depths=_depths, dims=_dims),
                       doc=f"InceptionNeXt ({_name}): depths {_depths}, dims {_dims}"))
