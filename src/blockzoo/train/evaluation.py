"""``blockzoo eval``: evaluate a trained model on a dataset's test split from its weights file alone (this module is
``evaluation``, not ``evaluate``: a submodule of that name would replace the function ``blockzoo.train.evaluate``).

:func:`evaluate_checkpoint` rebuilds the model with :func:`blockzoo.load_model` (a checkpoint or a weights file that
carries its model spec), runs the trainer's :func:`~blockzoo.train.evaluate` over the test split and returns the
accuracy, the loss, the per-class accuracy and the confusion matrix (row: true class, column: predicted class).
:func:`write_eval_report` writes them as ``eval.json`` and the confusion matrix as ``confusion.png``.
The dataset defaults to the one the model was trained on (recorded in a checkpoint, or in the ``result.json`` beside a
weights file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from blockzoo.errors import ConfigError

from .checkpoint import load_model, read_metadata
from .trainer import evaluate, resolve_device

__all__ = ["evaluate_checkpoint", "checkpoint_split", "write_eval_report", "plot_confusion"]


def evaluate_checkpoint(path: str | os.PathLike, data: str | None = None, *, data_dir: str | None = None,
                        batch_size: int = 256, device: str = "auto", precision: str = "fp32") -> dict[str, Any]:
    """Accuracy, loss, per-class accuracy and confusion matrix of the model in ``path`` on the test split of
    ``data`` (default: the dataset recorded in the checkpoint's config; ``data_dir`` likewise).

    Returns ``{"checkpoint", "model", "data", "split", "n", "loss", "acc", "classes", "per_class_acc",
    "per_class_n", "confusion"}``. Raises :class:`ConfigError` if no dataset is given or known, or if the dataset's
    classes or channels do not match the model's."""
    from blockzoo.data import Loader

    path = os.fspath(path)
    model = load_model(path)   # a file without model spec fails here, naming the fix
    spec = read_metadata(path)["model_spec"]
    data, test_set = checkpoint_split(path, "test", data, data_dir=data_dir)
    dev = resolve_device(device)
    model.to(dev)
    loader = Loader(test_set, batch_size, train=False, device=dev)
    res = evaluate(model, loader, precision=precision, device=dev, num_classes=test_set.num_classes)
    confusion = res["confusion"]
    per_n = [sum(row) for row in confusion]
    return {
        "checkpoint": path, "model": spec["name"], "data": data, "split": "test", "n": res["n"], "loss": res["loss"],
        "acc": res["acc"], "classes": list(test_set.classes), "per_class_n": per_n,
        "per_class_acc": [row[i] / n if n else None for i, (row, n) in enumerate(zip(confusion, per_n))],
        "confusion": confusion,
    }


def checkpoint_split(path: str | os.PathLike, split: str, data: str | None = None, *,
                     data_dir: str | None = None) -> tuple[str, Any]:
    """``(data, dataset)``: the whole ``split`` ("train" or "test") of ``data`` (default: the dataset recorded with
    the checkpoint in ``path``), read as the run read it. Raises :class:`ConfigError` if no dataset
    is given or known, or if its classes or channels do not match the checkpoint's model."""
    from blockzoo.data import load_split

    path = os.fspath(path)
    meta = read_metadata(path)
    cfg = _training_config(path, meta)
    data = data or cfg.get("data")
    if not data:
        raise ConfigError(f"{path!r} does not record its dataset (a weights file outside its run folder); pass "
                          f"--data NAME (and --data-dir where its files are)")
    # the run's own dataset is read as it trained on it (files, checksum check, image-folder size); the whole
    # split, whatever --subset / --test-subset the run used
    same = data == cfg.get("data")
    opts = SimpleNamespace(data=data, data_dir=data_dir if data_dir is not None or not same else cfg.get("data_dir"),
                           verify=cfg.get("verify", True) if same else True,
                           img_size=cfg.get("img_size") if same else None, subset=None, test_subset=None, seed=0)
    spec = meta.get("model_spec") or {}
    dataset = load_split(opts, split)
    for what, ours, theirs in (("classes", spec.get("num_classes"), dataset.num_classes),
                               ("input channels", spec.get("in_chans"), dataset.in_chans)):
        if ours is not None and ours != theirs:
            raise ConfigError(f"{path!r} holds a {spec['name']} for {ours} {what} but {data} has {theirs}; pass "
                              f"the --data the model was trained on")
    return data, dataset


def _training_config(path: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The config the model was trained with: the checkpoint's own, else (a weights file such as best.safetensors)
    the ``result.json`` of the run folder it lies in; ``{}`` when neither records one."""
    if isinstance(meta.get("config"), dict):
        return meta["config"]
    try:
        cfg = json.loads((Path(path).parent / "result.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def plot_confusion(result: dict[str, Any], path: str | Path) -> None:
    """The confusion matrix of an :func:`evaluate_checkpoint` result as an image (rows normalised to the true
    class's count, the counts written in the cells when there are at most 20 classes)."""
    from blockzoo.report.plot import pyplot

    plt = pyplot()
    cm, classes = result["confusion"], result["classes"]
    k = len(classes)
    norm = [[c / max(sum(row), 1) for c in row] for row in cm]
    side = min(3 + 0.45 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ticks = list(range(k))
    ax.set_xticks(ticks, classes, rotation=90 if k > 5 else 0, fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{result['model']} on {result['data']} ({result['split']}): accuracy {100 * result['acc']:.2f}% "
                 f"of {result['n']}")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i][j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i][j] > 0.5 else "black")
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def write_eval_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``eval.json`` (the whole result) and ``confusion.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "eval.json", "png": out / "confusion.png"}
    files["json"].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_confusion(result, files["png"])
    return files
