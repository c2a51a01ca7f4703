"""Weights for registered models: ``create_model(name, checkpoint_path=FILE)`` loads a blockzoo weights or checkpoint
file or a state dict in blockzoo's or timm's key layout (:mod:`blockzoo.weights.load`); ``pretrained=True`` timm's
published weights from the Hugging Face hub (:mod:`blockzoo.weights.hub`), for the architectures blockzoo shares with
timm (:data:`TIMM_MODELS`, the key maps in :mod:`blockzoo.weights.timm_map`)."""
from blockzoo.weights.load import load_pretrained, read_state_dict  # noqa: F401
from blockzoo.weights.timm_map import (  # noqa: F401
    TIMM_MODELS,
    TimmModel,
    from_timm_state_dict,
    timm_counterpart,
    timm_key_map,
    to_timm_state_dict,
)

__all__ = ["load_pretrained", "read_state_dict", "TIMM_MODELS", "TimmModel", "from_timm_state_dict",
           "timm_counterpart", "timm_key_map", "to_timm_state_dict"]
