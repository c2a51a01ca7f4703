"""``pretrained=True``: timm's published weights, downloaded once from the Hugging Face hub and cached.

The file is the hub repository ``timm/<timm name>.<tag>``'s ``model.safetensors`` (the name and tag recorded in
:data:`blockzoo.weights.timm_map.TIMM_MODELS`); it is fetched with ``huggingface_hub`` when that is installed (its
cache, token and mirror settings apply), else with ``urllib`` into ``$BLOCKZOO_CACHE/weights`` (default
``~/.cache/blockzoo/weights``), written atomically. A file already in that folder is used without any network access,
so weights copied there by hand (e.g. on a machine without internet) load too.
"""
from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.files import atomic_write
from blockzoo.weights.timm_map import timm_counterpart

__all__ = ["HUB_URL", "cache_dir", "timm_weights_file"]

HUB_URL = "https://huggingface.co/{repo}/resolve/main/model.safetensors"


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$BLOCKZOO_CACHE/weights`` (default ``~/.cache/blockzoo/weights``)."""
    return Path(os.environ.get("BLOCKZOO_CACHE") or Path.home() / ".cache" / "blockzoo") / "weights"


def timm_weights_file(name: str, *, timeout: float = 30.0) -> Path:
    """The local path of timm's published weights for registered model ``name``, downloaded if not cached.

    Raises :class:`ConfigError` if timm publishes no weights for ``name`` and :class:`CheckpointError` (one line,
    with the URL and how to pass the file with ``checkpoint_path=`` instead) if the hub cannot be reached."""
    timm = timm_counterpart(name)
    if timm.hub_id is None:
        what = f"timm's {timm.name}" if timm.name else "the architecture (timm registers no model for it)"
        raise ConfigError(f"timm publishes no weights for {what}, so {name!r} has no pretrained=True; train it or "
                          f"pass checkpoint_path=FILE")
    dest = cache_dir() / f"{timm.name}.{timm.tag}.safetensors"
    if dest.is_file():
        return dest
    url = HUB_URL.format(repo=timm.hub_id)
    try:
        return _download(timm.hub_id, url, dest, timeout)
    except OSError as e:
        raise CheckpointError(f"cannot download {name}'s pretrained weights ({url}): the Hugging Face hub is not "
                              f"reachable ({e}). Fix: download that file where the hub is reachable and pass "
                              f"create_model({name!r}, checkpoint_path='model.safetensors'), or copy it to {dest}"
                              ) from e


def _download(repo: str, url: str, dest: Path, timeout: float) -> Path:
    """Fetch ``repo``'s ``model.safetensors``; any failure is an ``OSError``."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        hf_hub_download = None
    if hf_hub_download is not None:
        try:
            return Path(hf_hub_download(repo, "model.safetensors"))
        except Exception as e:   # its HTTP / offline errors differ between versions
            raise OSError(f"{type(e).__name__}: {e}") from e
    def download(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
    atomic_write(dest, download)
    return dest
