"""Safe, atomic checkpoints in the safetensors format (no pickle anywhere: loading never executes code).

Two file kinds, both plain ``.safetensors`` files readable by any safetensors tool:

* **checkpoint** (``metadata["format"] == "blockzoo-checkpoint"``, written by :func:`save_checkpoint`): model
  tensors under ``model.<name>``, optimizer state tensors under ``optim.…``, RNG state tensors under ``rng.…``,
  user tensors under ``extra.…``. Everything that is not a tensor (optimizer hyper-parameters, epoch, global step,
  best metric, the run config, GradScaler state, Python/NumPy RNG states) is JSON in the safetensors metadata;
  tensors inside such structures are replaced by ``{"__tensor__": key}`` references.
* **weights** (``"blockzoo-weights"``, written by :func:`save_weights`): the model's ``state_dict`` only, with its
  natural key names, for users and deploy tools. :func:`load_weights` also accepts a full checkpoint.

Both kinds may carry a ``model_spec`` (registered model name, slot values, model options, ``num_classes``,
``in_chans``, ``img_size``; the trainer writes it for every model it builds), from which :func:`load_model` rebuilds
the model with :func:`blockzoo.create_model` and loads the weights, without the run folder.

Every file carries a SHA-256 (metadata key ``sha256``) of its tensor data *and* of every other metadata field,
verified on load, so truncation, silent bit-rot and a hand-edited ``epoch`` or config are reported as
:class:`CheckpointError` instead of producing a subtly broken model or run. On top of that the checkpoint's fields
are type- and range-checked on load. Files of format version 1 (whose checksum covered the tensors only) still load:
their tensors are verified, their metadata is range-checked but not covered by the checksum.

Writes are atomic: the file is written to a temporary file in the same directory, fsync'ed, then moved over the
target with ``os.replace`` (and the directory is fsync'ed), so a crash leaves either the old or the new file, never
a partial one, and no temporary file is left behind on error.
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from blockzoo.errors import CheckpointError
from blockzoo.files import atomic_write

__all__ = [
    "CheckpointError", "save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "read_metadata",
    "capture_rng_state", "restore_rng_state", "atomic_save_tensors", "remove_stale_temp_files", "load_model",
    "make_model_spec", "read_model_spec", "load_state",
    "CHECKPOINT_FORMAT", "WEIGHTS_FORMAT", "MODEL_SPEC_KEYS",
]

CHECKPOINT_FORMAT = "blockzoo-checkpoint"
WEIGHTS_FORMAT = "blockzoo-weights"
FORMAT_VERSION = "2"
#: format versions this blockzoo reads; version 1's checksum covers the tensor data only.
READABLE_VERSIONS = ("1", "2")
_MODEL_PREFIX = "model."
#: keys of ``model_spec``: everything :func:`blockzoo.create_model` needs to rebuild the model.
MODEL_SPEC_KEYS = ("name", "slots", "model_kwargs", "num_classes", "in_chans", "img_size")

# ------------------------------------------------------------------------------------------------ tensor/JSON codec
def _encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn a nested Python structure into JSON-able data, moving tensors into ``tensors`` (keyed under ``prefix``)."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        n = 1
        while key in tensors:
            key, n = f"{prefix}#{n}", n + 1
        tensors[key] = obj.detach()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, f"{prefix}.k{i}", tensors), _encode(v, f"{prefix}.{k}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (only tensors, arrays, numbers, strings, "
                    f"None, lists, tuples and dicts are supported)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["__items__"]}
        if "__dtype__" in obj:
            return getattr(torch, obj["__dtype__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def _hashable(k: Any) -> Any:
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k


def _prepare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two tensors sharing storage (tied weights are stored twice, as safetensors requires)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        if t.numel() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen.add(ptr)
        out[k] = t
    return out


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """SHA-256 over (name, dtype, shape, raw bytes) of every tensor, in sorted-name order, then (unless
    ``metadata`` is None: format version 1) over the metadata without ``sha256``, as sorted compact JSON."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"{k}|{str(t.dtype)}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    if metadata is not None:
        fields = {k: v for k, v in metadata.items() if k != "sha256"}
        h.update(b"|metadata|" + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------- atomic file I/O
def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` + ``metadata`` to ``path`` atomically (temp file in the same dir, fsync, ``os.replace``).

    A ``sha256`` of the tensor data and the metadata is added to the metadata."""
    tensors = _prepare(tensors)
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta["sha256"] = _digest(tensors, meta)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    _fsync_dir(os.path.dirname(os.path.abspath(path)))   # the rename itself survives a crash


def _read(path: str | os.PathLike, *, map_location: str | torch.device = "cpu", fix: str,
          tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    try:
        with safe_open(path, framework="pt", device=str(map_location)) as f:
            meta = dict(f.metadata() or {})
            data = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error type for bad headers / truncation
        raise CheckpointError(f"{path!r} is not a valid safetensors file ({e}); it is corrupt or truncated. "
                              f"Fix: {fix}") from e
    if tensors and "sha256" in meta:
        covered = None if meta.get("format_version") == "1" else meta
        if _digest(data, covered) != meta["sha256"]:
            raise CheckpointError(f"{path!r} is corrupt or was edited: its tensors or metadata do not match the "
                                  f"checksum stored in the file. Fix: {fix}")
    return data, meta


def _json_meta(meta: dict[str, str], key: str, path: str, fix: str) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path!r} has missing or unreadable metadata field {key!r} ({e}). Fix: {fix}") from e


def remove_stale_temp_files(directory: str | os.PathLike, names: tuple[str, ...]) -> list[str]:
    """Delete the temporary files a killed atomic write left behind in ``directory``: ``.<name>.*.tmp`` for each of
    ``names`` (the pattern of :func:`atomic_save_tensors` and of the trainer's text writes), nothing else.
    Returns the names of the removed files."""
    removed = []
    if os.path.isdir(directory):
        for name in names:
            for p in sorted(Path(directory).glob(f".{glob.escape(name)}.*.tmp")):
                if p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p.name)
    return removed


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint or weights file (JSON fields decoded) without loading any tensor."""
    _, meta = _read(path, tensors=False, fix="delete it and re-create it")
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Torch CPU (and, if CUDA is initialised, every CUDA device's) generator state, Python's and NumPy's."""
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored only when CUDA is available with at least as
    many devices as were saved."""
    if state.get("torch_cpu") is not None:
        torch.set_rng_state(state["torch_cpu"].to("cpu", torch.uint8))
    if state.get("python") is not None:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if state.get("numpy") is not None:
        np.random.set_state(tuple(state["numpy"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() >= len(cuda):
        torch.cuda.set_rng_state_all([t.to("cpu", torch.uint8) for t in cuda])


# ------------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, epoch: int = 0, extra: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None, best_metric: float | None = None,
                    scaler: Any | None = None, rng: bool = True, model_spec: dict[str, Any] | None = None,
                    steps_per_epoch: int | None = None) -> None:
    """Atomically write a full training checkpoint to ``path`` (see module docstring for the layout).

    ``extra`` may hold any nested structure of tensors / numbers / strings / lists / dicts (restored as-is);
    ``config`` is stored as JSON under metadata key ``config``; ``rng=True`` records the RNG states so that
    ``load_checkpoint(..., restore_rng=True)`` continues the same random stream. ``best_metric`` is an accuracy in
    [0, 1]; ``model_spec`` (from :func:`make_model_spec`) lets :func:`load_model` rebuild the model;
    ``steps_per_epoch`` (the most steps any epoch of the run took) lets the loader check ``step`` against ``epoch``.
    """
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[_MODEL_PREFIX + k] = v
    meta: dict[str, str] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": json.dumps(int(epoch)),
        "step": json.dumps(int(step)),
        "best_metric": json.dumps(None if best_metric is None else float(best_metric)),
        "config": json.dumps(config),
        "model_class": type(model).__name__,
        "torch_version": torch.__version__,
        "created_unix": json.dumps(time.time()),
    }
    if model_spec is not None:
        meta["model_spec"] = _encode_spec(model_spec)
    if steps_per_epoch is not None:
        meta["steps_per_epoch"] = json.dumps(int(steps_per_epoch))
    if optimizer is not None:
        meta["optimizer_class"] = type(optimizer).__name__
        meta["optimizer"] = json.dumps(_encode(optimizer.state_dict(), "optim", tensors))
    if scaler is not None:
        meta["scaler"] = json.dumps(_encode(scaler.state_dict(), "scaler", tensors))
    if rng:
        meta["rng"] = json.dumps(_encode(capture_rng_state(), "rng", tensors))
    meta["extra"] = json.dumps(_encode(extra or {}, "extra", tensors))
    atomic_save_tensors(path, tensors, meta)


def _bad_field(path: str, name: str, value: Any, want: str, fix: str) -> CheckpointError:
    return CheckpointError(f"{path!r} has an invalid metadata field {name!r} ({value!r}; expected {want}); the file "
                           f"is corrupt or was edited. Fix: {fix}")


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _checked_fields(meta: dict[str, str], path: str, fix: str) -> dict[str, Any]:
    """``epoch``, ``step``, ``best_metric``, ``config`` and ``model_spec`` of a checkpoint, type- and range-checked."""
    epoch, step = _json_meta(meta, "epoch", path, fix), _json_meta(meta, "step", path, fix)
    for name, v in (("epoch", epoch), ("step", step)):
        if not _is_count(v):
            raise _bad_field(path, name, v, "an integer >= 0", fix)
    if "steps_per_epoch" in meta:
        spe = _json_meta(meta, "steps_per_epoch", path, fix)
        if not _is_count(spe) or spe < 1:
            raise _bad_field(path, "steps_per_epoch", spe, "an integer >= 1", fix)
        if not epoch <= step <= epoch * spe:  # every epoch took between 1 and steps_per_epoch steps
            raise _bad_field(path, "step", step, f"between epoch ({epoch}) and epoch x steps_per_epoch "
                                                 f"({epoch * spe})", fix)
    best = _json_meta(meta, "best_metric", path, fix)
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))
                             or not (math.isfinite(best) and 0 <= best <= 1)):
        raise _bad_field(path, "best_metric", best, "None or an accuracy in [0, 1]", fix)
    config = _json_meta(meta, "config", path, fix)
    if config is not None and not isinstance(config, dict):
        raise _bad_field(path, "config", config, "a dict of TrainConfig fields", fix)
    return {"epoch": epoch, "step": step, "best_metric": best, "config": config,
            "model_spec": _decoded_spec(meta, path, fix)}


# -------------------------------------------------------------------------------------------------------- model spec
def make_model_spec(name: str, *, slots: dict[str, Any], model_kwargs: dict[str, Any], num_classes: int,
                    in_chans: int, img_size: tuple[int, int] | None) -> dict[str, Any] | None:
    """The ``model_spec`` of a registered model built as ``create_model(name, num_classes=, in_chans=, img_size=,
    **model_kwargs, **slots)``, or ``None`` if a value cannot be stored in a file (e.g. a callable slot value)."""
    spec = {"name": name, "slots": dict(slots), "model_kwargs": dict(model_kwargs), "num_classes": int(num_classes),
            "in_chans": int(in_chans), "img_size": None if img_size is None else [int(s) for s in img_size]}
    try:
        _encode_spec(spec)
    except TypeError:
        return None
    return spec


def _encode_spec(spec: dict[str, Any]) -> str:
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(spec, "model_spec", tensors)
    if tensors:
        raise TypeError("a model_spec cannot hold tensors")
    return json.dumps(encoded)  # tuples (e.g. a slot value ("se", {"reduction": 8})) survive as {"__tuple__": ...}


def _decoded_spec(meta: dict[str, str], path: str, fix: str) -> dict[str, Any] | None:
    if "model_spec" not in meta:
        return None
    spec = _decode(_json_meta(meta, "model_spec", path, fix), {})
    ok = (isinstance(spec, dict) and set(spec) == set(MODEL_SPEC_KEYS) and isinstance(spec["name"], str)
          and isinstance(spec["slots"], dict) and isinstance(spec["model_kwargs"], dict)
          and _is_count(spec["num_classes"]) and _is_count(spec["in_chans"]) and spec["in_chans"] >= 1
          and (spec["img_size"] is None or (isinstance(spec["img_size"], list) and len(spec["img_size"]) == 2
                                            and all(_is_count(s) and s >= 1 for s in spec["img_size"]))))
    if not ok:
        raise _bad_field(path, "model_spec", spec, f"a dict with keys {', '.join(MODEL_SPEC_KEYS)}", fix)
    return spec


def read_model_spec(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``model_spec`` of a weights or checkpoint file (checked like on load), or ``None`` if it carries none;
    no tensor is loaded."""
    path = os.fspath(path)
    fix = f"re-create {path!r} (e.g. re-export it from the training run) and make sure it is intact"
    _, meta = _read(path, tensors=False, fix=fix)
    return _decoded_spec(meta, path, fix)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a weights file or checkpoint was saved from (with :func:`blockzoo.create_model`, from the
    file's ``model_spec``) and load its weights; no run folder needed. Returns the model in eval mode.

    Raises :class:`CheckpointError` if the file is missing, corrupt, or carries no ``model_spec`` (written for a
    model that was not built from the registry, or by an older blockzoo)."""
    from blockzoo.registry import create_model

    path = os.fspath(path)
    spec = read_model_spec(path)
    if spec is None:
        raise CheckpointError(f"{path!r} does not say which model it holds (no model_spec: it was saved from a model "
                              f"passed to train() ready-made, or by an older blockzoo). Fix: build the model "
                              f"yourself and load the file with blockzoo.train.load_weights(path, model)")
    size = {} if spec["img_size"] is None else {"img_size": tuple(spec["img_size"])}
    model = create_model(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"], **size,
                         **{**spec["model_kwargs"], **spec["slots"]})
    load_weights(path, model, map_location=map_location)
    return model.eval()


def _model_state(data: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, torch.Tensor]:
    if meta.get("format") == CHECKPOINT_FORMAT:
        n = len(_MODEL_PREFIX)
        return {k[n:]: v for k, v in data.items() if k.startswith(_MODEL_PREFIX)}
    return dict(data)


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: str, saved_class: str | None,
                      strict: bool, fix: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if shapes or (strict and (missing or unexpected)):
        def short(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" ... ({len(xs)} total)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing keys [{short(missing)}]")
        if unexpected:
            parts.append(f"unexpected keys [{short(unexpected)}]")
        if shapes:
            parts.append(f"shape mismatches [{short(shapes)}]")
        raise CheckpointError(
            f"{path!r} does not fit this {type(model).__name__}"
            f"{f' (it was saved from a {saved_class})' if saved_class else ''}: {'; '.join(parts)}. "
            f"Fix: {fix}")
    model.load_state_dict(state, strict=strict)


def _fit_param_groups(saved: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Restore Python types lost in JSON (tuples) using the live optimizer's groups as a template."""
    out = []
    for s, c in zip(saved, current):
        g = dict(s)
        for k, v in c.items():
            if isinstance(v, tuple) and isinstance(g.get(k), list):
                g[k] = tuple(g[k])
        out.append(g)
    return out


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, map_location: str | torch.device = "cpu",
                    scaler: Any | None = None, restore_rng: bool = False, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, restoring ``model`` / ``optimizer`` / ``scaler`` in
    place (those given) and, with ``restore_rng=True``, the global RNG states.

    Returns the metadata: ``epoch``, ``step``, ``best_metric``, ``config`` (dict or None), ``extra`` (decoded),
    ``model_spec`` (dict or None), ``model_class``, ``optimizer_class``, ``torch_version``, ``path``; if ``model``
    is None also ``model_state_dict`` (the tensors, on ``map_location``). Raises :class:`CheckpointError` for a
    missing, corrupt, truncated, edited or mismatching file and for a metadata field of the wrong type or range;
    nothing is restored in that case unless the mismatch is in the optimizer (checked after the model).
    """
    path = os.fspath(path)
    fix = f"delete {path!r}, or rerun without --resume and with --overwrite to start from scratch"
    data, meta = _read(path, map_location=map_location, fix=fix)
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        what = "a weights-only file (use load_weights)" if fmt == WEIGHTS_FORMAT else f"format {fmt!r}"
        raise CheckpointError(f"{path!r} is not a blockzoo training checkpoint ({what}). Fix: {fix}")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path!r} has checkpoint format version {meta.get('format_version')!r}; this blockzoo "
                              f"reads versions {', '.join(READABLE_VERSIONS)}. Fix: {fix}")
    out: dict[str, Any] = {
        "path": path,
        **_checked_fields(meta, path, fix),
        "model_class": meta.get("model_class"),
        "optimizer_class": meta.get("optimizer_class"),
        "torch_version": meta.get("torch_version"),
    }
    try:
        out["extra"] = _decode(_json_meta(meta, "extra", path, fix), data)
        opt_state = _decode(json.loads(meta["optimizer"]), data) if "optimizer" in meta else None
        scaler_state = _decode(json.loads(meta["scaler"]), data) if "scaler" in meta else None
        rng_state = _decode(json.loads(meta["rng"]), data) if "rng" in meta else None
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path!r} has inconsistent metadata ({type(e).__name__}: {e}). Fix: {fix}") from e
    if not isinstance(out["extra"], dict):
        raise _bad_field(path, "extra", out["extra"], "a dict", fix)
    out["scaler"] = scaler_state
    state = _model_state(data, meta)
    if model is None:
        out["model_state_dict"] = state
    else:
        _load_model_state(model, state, path, meta.get("model_class"), strict,
                          fix=f"build the same model (same --model and --slots) or {fix}")
    if optimizer is not None:
        if opt_state is None:
            raise CheckpointError(f"{path!r} holds no optimizer state. Fix: {fix}")
        if meta.get("optimizer_class") != type(optimizer).__name__:
            raise CheckpointError(f"{path!r} was saved with optimizer {meta.get('optimizer_class')}, not "
                                  f"{type(optimizer).__name__}. Fix: use the same --optimizer, or {fix}")
        current = optimizer.state_dict()["param_groups"]
        saved_groups = opt_state.get("param_groups", [])
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in current]:
            raise CheckpointError(f"{path!r}: optimizer parameter groups do not match this model/optimizer "
                                  f"(saved sizes {[len(g['params']) for g in saved_groups]}, now "
                                  f"{[len(g['params']) for g in current]}). Fix: use the same weight-decay "
                                  f"settings and model, or {fix}")
        opt_state["param_groups"] = _fit_param_groups(saved_groups, current)
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path!r}: cannot restore the optimizer state ({e}). Fix: {fix}") from e
    if scaler is not None and scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    if restore_rng and rng_state is not None:
        restore_rng_state(rng_state)
    return out


# ---------------------------------------------------------------------------------------------------------- weights
def save_weights(path: str | os.PathLike, model: nn.Module, *, metadata: dict[str, Any] | None = None,
                 model_spec: dict[str, Any] | None = None) -> None:
    """Atomically write ``model.state_dict()`` (natural key names) to a safetensors file.

    ``metadata`` values are stored as JSON strings (read them back with :func:`read_metadata`); ``model_spec``
    (from :func:`make_model_spec`) lets :func:`load_model` rebuild the model from the file alone."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    if model_spec is not None:
        meta["model_spec"] = _encode_spec(model_spec)
    meta.update({"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION, "model_class": type(model).__name__,
                 "torch_version": torch.__version__})
    atomic_save_tensors(path, dict(model.state_dict()), meta)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, *, strict: bool = True,
               fix: str) -> None:
    """Load a state dict read from ``source`` (a file name, for the message) into ``model`` with the checks of
    :func:`load_weights`: a :class:`CheckpointError` listing missing / unexpected keys (when ``strict``) and shape
    mismatches (always), ending with ``fix``."""
    _load_model_state(model, state, source, None, strict, fix)


def load_weights(path: str | os.PathLike, model: nn.Module, *, strict: bool = True,
                 map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights into ``model`` in place from a weights file *or* a full checkpoint; returns the file metadata.

    Raises :class:`CheckpointError` if the file is corrupt or its tensors do not fit the model (shape mismatches
    always; missing/unexpected keys when ``strict``)."""
    path = os.fspath(path)
    fix = f"re-create {path!r} (e.g. re-export it from the training run) and make sure it is intact"
    data, meta = _read(path, map_location=map_location, fix=fix)
    _load_model_state(model, _model_state(data, meta), path, meta.get("model_class"), strict,
                      fix="build the same model (same --model and --slots) the weights were saved from")
    return {k: v for k, v in meta.items() if k != "sha256"}
