"""Regenerate ``timm_layouts/*.json`` from timm itself (needs ``pip install timm``; not part of the test suite).

For one small variant per family blockzoo shares with timm, records timm's state-dict (key, shape) list, in timm's
order, and timm's output for the deterministic weights of ``conftest.fill`` on ``conftest.layout_input`` (the
logits; for PoolFormer the trunk ``stages(stem(x))``, because timm normalises after pooling where the official
PoolFormer, and blockzoo, normalise before). The tests rebuild that state dict without timm, load it into the
blockzoo model through the key map and compare the outputs.

    python tests/weights/make_timm_layouts.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import LAYOUTS, layout_input, timm_state  # noqa: E402

# blockzoo model -> timm model (timm registers no plain ECA-ResNet: ECA_RESNET18 builds it)
ECA_RESNET18 = "ResNet(BasicBlock, [2, 2, 2, 2], block_args=dict(attn_layer='eca'))"
LAYOUT_MODELS = {
    "resnet18": "resnet18", "resnet50": "resnet50", "seresnet50": "seresnet50",
    "ecaresnet18": ECA_RESNET18,
    "sknet50": "skresnext50_32x4d", "mobilenetv2_100": "mobilenetv2_100", "convnext_atto": "convnext_atto",
    "convnext_tiny": "convnext_tiny", "inception_next_atto": "inception_next_atto", "poolformer_s12": "poolformer_s12",
}
TRUNK_ONLY = ("poolformer_s12",)


def build(timm_name: str) -> torch.nn.Module:
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    if timm_name == ECA_RESNET18:
        return ResNet(BasicBlock, [2, 2, 2, 2], block_args=dict(attn_layer="eca"))
    return timm.create_model(timm_name)


def main() -> None:
    import timm

    for bz, timm_name in LAYOUT_MODELS.items():
        model = build(timm_name).eval()
        keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        layout = {"blockzoo_model": bz, "timm_model": timm_name, "timm_version": timm.__version__,
                  "input_shape": [1, 3, 64, 64], "compare": "stages" if bz in TRUNK_ONLY else "logits", "keys": keys}
        model.load_state_dict(timm_state(layout))
        with torch.no_grad():
            x = layout_input(layout)
            out = model.stages(model.stem(x)) if bz in TRUNK_ONLY else model(x)
        layout["output_shape"] = list(out.shape)
        layout["output"] = [float(f"{v:.7g}") for v in out.flatten().tolist()]
        (LAYOUTS / f"{bz}.json").write_text(json.dumps(layout, separators=(",", ":")) + "\n")
        print(bz, len(keys), "keys")


if __name__ == "__main__":
    main()
