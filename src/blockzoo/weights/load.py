"""``create_model(name, checkpoint_path=FILE)`` / ``pretrained=True``: load weights into a freshly built model.

A file is one of

* a blockzoo weights or checkpoint file (``.safetensors`` written by :mod:`blockzoo.train.checkpoint`): its model spec
  (when it has one) must describe the model being built (same registered name, classes, input channels and slots);
  loaded by :func:`blockzoo.train.checkpoint.load_weights` with its checksum and strict key/shape checks;
* a plain state dict, ``.safetensors`` or ``.pth`` / ``.pt`` / ``.bin`` (read with ``torch.load(weights_only=True)``:
  pickled code is never executed; a training checkpoint's ``state_dict`` / ``model`` entry and DDP's ``module.``
  prefix are unwrapped), in blockzoo's own key layout or in timm's for the models of
  :data:`~blockzoo.weights.timm_map.TIMM_MODELS` (whichever layout more of its keys match).

Loading is strict: a :class:`CheckpointError` names the first missing, unexpected or mis-shaped key.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import torch
import torch.nn as nn

from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.train.checkpoint import (
    CHECKPOINT_FORMAT,
    WEIGHTS_FORMAT,
    load_state,
    load_weights,
    read_metadata,
    read_model_spec,
)
from blockzoo.weights.timm_map import TIMM_MODELS, from_timm_state_dict, timm_key_map

__all__ = ["load_pretrained", "read_state_dict"]

_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
#: classes of the published weights ``pretrained=True`` loads (every tag in ``TIMM_MODELS`` is an ImageNet-1k model)
PUBLISHED_CLASSES = 1000


def load_pretrained(model: nn.Module, name: str, *, pretrained: bool = False, checkpoint_path: str | None = None,
                    options: dict[str, Any] | None = None) -> nn.Module:
    """Load weights into ``model`` (built as registered model ``name`` with the slot / constructor ``options``)
    in place: from ``checkpoint_path`` if given, else, with ``pretrained=True``, timm's published weights for
    ``name`` (downloaded once from the Hugging Face hub and cached: :func:`blockzoo.weights.hub.timm_weights_file`).
    As in timm, a model built with another ``num_classes`` than the published weights' keeps its own classifier
    (``checkpoint_path`` files load strictly). Returns ``model``."""
    if pretrained and checkpoint_path is not None:
        raise ConfigError(f"{name}: pass pretrained=True (timm's published weights) or checkpoint_path= (a file), "
                          f"not both")
    new_classifier = False
    if checkpoint_path is None:
        if not pretrained:
            return model
        from blockzoo.weights.hub import timm_weights_file

        checkpoint_path = os.fspath(timm_weights_file(name))
        new_classifier = getattr(model, "num_classes", PUBLISHED_CLASSES) != PUBLISHED_CLASSES
    path = os.fspath(checkpoint_path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint_path {path!r} does not exist. Fix: pass the path of a blockzoo weights "
                              f"file or of a state dict (.safetensors, .pth)")
    if path.endswith(".safetensors") and _blockzoo_format(path):
        _check_spec(path, model, name, options or {})
        load_weights(path, model)
        return model
    state = read_state_dict(path)
    if name in TIMM_MODELS and _timm_layout(model, name, state):
        state = from_timm_state_dict(model, state, name=name, source=repr(path), new_classifier=new_classifier)
    load_state(model, state, path, fix=f"pass a state dict of {name} (blockzoo's or timm's key layout) built with "
                                       f"the same num_classes / in_chans / slots")
    return model


def _blockzoo_format(path: str) -> bool:
    return read_metadata(path).get("format") in (WEIGHTS_FORMAT, CHECKPOINT_FORMAT)


def _timm_layout(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> bool:
    ours, theirs = set(model.state_dict()), set(timm_key_map(model, name).values())
    return sum(k in theirs for k in state) > sum(k in ours for k in state)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a plain state-dict file: ``.safetensors``, or ``.pth`` / ``.pt`` / ``.bin`` loaded with
    ``torch.load(weights_only=True)`` (a dict with a ``state_dict`` or ``model`` entry is unwrapped, a ``module.``
    prefix on every key removed). Raises :class:`CheckpointError` for an unreadable file or one holding pickled code
    or anything but tensors."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path!r} is not a readable safetensors file ({e}). Fix: re-download or "
                                  f"re-create it") from e
    if not path.endswith(_TORCH_SUFFIXES):
        raise ConfigError(f"checkpoint_path {path!r}: unknown file type; pass a .safetensors, .pth, .pt or .bin file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):   # how torch refuses to build a non-tensor object
            raise CheckpointError(f"{path!r} is not a readable torch file ({str(e).splitlines()[0]}); it is corrupt "
                                  f"or truncated. Fix: re-download or re-create it") from e
        raise CheckpointError(f"{path!r} holds more than tensors (pickled objects or code, which blockzoo never "
                              f"executes). Fix: save only the state dict (torch.save(model.state_dict(), path)) or "
                              f"convert it to .safetensors") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path!r} is not a readable torch file ({e}); it is corrupt or truncated. Fix: "
                              f"re-download or re-create it") from e
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise CheckpointError(f"{path!r} does not hold a state dict (a dict of tensors). Fix: save "
                              f"model.state_dict() to it")
    if obj and all(k.startswith("module.") for k in obj):   # saved from a DistributedDataParallel wrapper
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _canonical(value: Any) -> Any:
    """A slot value in a comparable form: ``"se(reduction=8)"`` and ``("se", {"reduction": 8})`` alike."""
    from blockzoo.models.base import per_stage_values
    from blockzoo.registry import NONE_NAMES, parse_slot_value

    entries = per_stage_values(value)
    if entries is not None:
        return [_canonical(e) for e in entries]
    block, opts = parse_slot_value(value)
    return ("none", {}) if block in NONE_NAMES else (block, opts)


def _check_spec(path: str, model: nn.Module, name: str, options: dict[str, Any]) -> None:
    """The file's model spec (if it has one) describes ``model``: :class:`CheckpointError` naming the difference."""
    from blockzoo.registry import get_model_spec

    spec = read_model_spec(path)
    if spec is None:
        return   # no spec (saved from a ready-made model): the strict key / shape check decides
    fix = f"build the model the file holds: blockzoo.load_model({path!r}) rebuilds it"
    if spec["name"] != name:
        raise CheckpointError(f"{path!r} holds a {spec['name']}, not a {name}. Fix: {fix}")
    built = {"num_classes": getattr(model, "num_classes", None), "in_chans": getattr(model, "in_chans", None)}
    for what, value in built.items():
        if value is not None and spec[what] != value:
            raise CheckpointError(f"{path!r} holds a {name} with {what}={spec[what]}, this one has {what}={value}. "
                                  f"Fix: build it with {what}={spec[what]} (then model.reset_classifier(n) for "
                                  f"another number of classes), or {fix}")
    defaults = get_model_spec(name).slots
    for slot, default in defaults.items():
        saved, ours = spec["slots"].get(slot, default), options.get(slot, default)
        if _canonical(saved) != _canonical(ours):
            raise CheckpointError(f"{path!r} holds a {name} with {slot}={saved!r}, this one has {slot}={ours!r}. "
                                  f"Fix: build it with {slot}={saved!r}, or {fix}")
