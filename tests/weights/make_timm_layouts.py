"""Regenerate ``timm_layouts/*.json`` from timm itself (needs ``pip install timm``; not part of the test suite).

For one small variant per family blockzoo shares with timm, records timm's state-dict (key, shape) list, in timm's
order, and timm's output for the deterministic weights of ``conftest.fill`` on ``conftest.layout_input`` (the
logits; for PoolFormer the trunk ``stages(stem(x))``, because timm normalises after pooling where the official
PoolFormer, and blockzoo, normalise before). The tests rebuild that state dict without timm, load it into the
blockzoo model through the key map and compare the outputs.

    python tests/weights/make_timm_layouts.py [blockzoo model ...]   # all layouts, or only those named
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
# the CIFAR-scale Swin models: timm's classes in the same configuration (timm registers no such model)
_SWIN_NANO = "(img_size=32, patch_size=2, window_size=4, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), " \
             "num_classes=10)"
SWIN_NANO, SWINV2_NANO = "SwinTransformer" + _SWIN_NANO, "SwinTransformerV2" + _SWIN_NANO
LAYOUT_MODELS = {
    "resnet18": "resnet18", "resnet50": "resnet50", "seresnet50": "seresnet50",
    "ecaresnet18": ECA_RESNET18,
    "sknet50": "skresnext50_32x4d", "mobilenetv2_100": "mobilenetv2_100", "convnext_atto": "convnext_atto",
    "convnext_tiny": "convnext_tiny", "inception_next_atto": "inception_next_atto", "poolformer_s12": "poolformer_s12",
    "swin_nano_patch2_window4_32": SWIN_NANO, "swin_tiny_patch4_window7_224": "swin_tiny_patch4_window7_224",
    "swinv2_nano_patch2_window4_32": SWINV2_NANO, "swinv2_tiny_window8_256": "swinv2_tiny_window8_256",
    "convit_tiny": "convit_tiny",
    "vit_tiny_patch16_224": "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224": "deit_tiny_distilled_patch16_224",
    "halonet_h1": "halonet_h1",
    "nasnetalarge": "nasnetalarge",
    "inception_v4": "inception_v4", "inception_resnet_v2": "inception_resnet_v2",
    "ghostnet_100": "ghostnet_100", "ghostnetv2_100": "ghostnetv2_100",
}
#: input side of the layouts whose model is built for another size than 64 px (the Swin window rule depends on it)
INPUT_SIDE = {"swin_nano_patch2_window4_32": 32, "swin_tiny_patch4_window7_224": 224,
              "swinv2_nano_patch2_window4_32": 32, "swinv2_tiny_window8_256": 256,
              "halonet_h1": 256,   # timm's halo layers need maps that are multiples of the block size (8)
              "inception_v4": 75, "inception_resnet_v2": 75,   # the smallest input (unpadded convs)
              "convit_tiny": 224,   # timm's ConViT has a fixed input size
              "vit_tiny_patch16_224": 224, "deit_tiny_distilled_patch16_224": 224}
TRUNK_ONLY = ("poolformer_s12",)


def build(timm_name: str) -> torch.nn.Module:
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    if timm_name == ECA_RESNET18:
        return ResNet(BasicBlock, [2, 2, 2, 2], block_args=dict(attn_layer="eca"))
    if timm_name in (SWIN_NANO, SWINV2_NANO):
        from timm.models.swin_transformer import SwinTransformer
        from timm.models.swin_transformer_v2 import SwinTransformerV2
        return eval(timm_name, {"SwinTransformer": SwinTransformer, "SwinTransformerV2": SwinTransformerV2})
    return timm.create_model(timm_name)


def main() -> None:
    import timm

    only = sys.argv[1:]
    if set(only) - set(LAYOUT_MODELS):
        raise SystemExit(f"no layout for {sorted(set(only) - set(LAYOUT_MODELS))}; choose from "
                         f"{', '.join(LAYOUT_MODELS)}")
    for bz, timm_name in LAYOUT_MODELS.items():
        if only and bz not in only:
            continue
        model = build(timm_name).eval()
        keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        side = INPUT_SIDE.get(bz, 64)
        layout = {"blockzoo_model": bz, "timm_model": timm_name, "timm_version": timm.__version__,
                  "input_shape": [1, 3, side, side], "compare": "stages" if bz in TRUNK_ONLY else "logits",
                  "keys": keys}
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
