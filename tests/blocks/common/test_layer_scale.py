"""blockzoo.blocks.common.layer_scale: LayerScale initial values per family."""
from __future__ import annotations

import torch

from blockzoo.blocks.common.layer_scale import LayerScale
from blockzoo.registry import create_model, get_model_spec
from helpers import n_params


def test_layer_scale_init_per_family():
    for name, value in (("convnext_atto", 1e-6), ("inception_next_atto", 1e-6), ("poolformer_s12", 1e-5)):
        m = create_model(name)
        gammas = [mod.gamma for mod in m.modules() if isinstance(mod, LayerScale)]
        per_block = 2 if name.startswith("poolformer") else 1
        assert len(gammas) == per_block * sum(m.depths)
        assert all(torch.equal(g, torch.full_like(g, value)) for g in gammas)
    m = create_model("convnext_atto", ls_init_value=None)
    assert not any(isinstance(mod, LayerScale) for mod in m.modules())
    assert n_params(m) == get_model_spec("convnext_atto").reference["params_1000cls"] - sum(m.dims[i] * m.depths[i]
                                                                                              for i in range(4))
