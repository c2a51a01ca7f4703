"""The ``prune`` command: ``blockzoo prune CHECKPOINT --method taylor --target-macs 0.6 --out DIR``.

Loads a trained checkpoint (``train.load_model``), prunes it with :func:`blockzoo.deploy.prune` on minibatches of
the training split of its dataset (``--data``, default: the one it was trained on), writes the pruned checkpoint
``DIR/pruned.safetensors`` (:func:`blockzoo.deploy.prune.save_pruned`: the channel plan rides in its config; load it
with :func:`blockzoo.deploy.prune.load_pruned`) and ``DIR/prune_report.json`` / ``.md``: parameters, MACs, latency
(batch 1, ``blockzoo.profile.profile_model``) and test accuracy before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from blockzoo.files import atomic_write_text

__all__ = ["add_commands", "cmd_prune", "prune_checkpoint"]


def _measure(model: Any, loader: Any, input_size: tuple[int, ...]) -> dict[str, Any]:
    from blockzoo.profile import profile_model
    from blockzoo.train.trainer import evaluate

    rep = profile_model(model, input_size, batch_size=1, train_step=False, memory=False, iters=20, warmup=2)
    res = evaluate(model, loader)
    return {"params": rep.params, "macs": rep.macs, "latency_ms": rep.latency_ms["median"], "acc": res["acc"],
            "loss": res["loss"]}


def prune_checkpoint(checkpoint: str, out: str, *, method: str = "taylor", target_macs: float = 0.6,
                     data: str | None = None, data_dir: str | None = None, batch_size: int = 64,
                     batches_per_step: int = 30, per_step: int | None = None, lr: float = 0.01,
                     criterion: str = "bn_gate", max_train: int | None = None,
                     max_test: int | None = None) -> dict[str, Any]:
    """Prune ``checkpoint`` and write the pruned checkpoint and the report into ``out``; returns the report."""
    from blockzoo.data import Loader
    from blockzoo.deploy.prune import prune, save_pruned
    from blockzoo.train.checkpoint import load_model, read_model_spec
    from blockzoo.train.evaluation import checkpoint_split

    model = load_model(checkpoint)
    spec = read_model_spec(checkpoint)
    name, train_set = checkpoint_split(checkpoint, "train", data, data_dir=data_dir)
    _, test_set = checkpoint_split(checkpoint, "test", name, data_dir=data_dir)
    if max_train is not None:
        train_set = dataclasses.replace(train_set, images=train_set.images[:max_train],
                                        labels=train_set.labels[:max_train])
    if max_test is not None:
        test_set = dataclasses.replace(test_set, images=test_set.images[:max_test], labels=test_set.labels[:max_test])
    train = Loader(train_set, batch_size, train=True)
    test = Loader(test_set, 256, train=False)
    x0, _ = next(iter(test))
    input_size = tuple(x0.shape[1:])
    before = _measure(model, test, input_size)
    res = prune(model, train, method=method, target_macs=target_macs, criterion=criterion, per_step=per_step,
                batches_per_step=batches_per_step, lr=lr)
    model.eval()
    after = _measure(model, test, input_size)
    report = {"checkpoint": checkpoint, "model": spec["name"], "data": name, "method": method,
              "criterion": criterion, "target_macs": target_macs, "before": before, "after": after,
              "rounds": res.history}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_pruned(str(out_dir / "pruned.safetensors"), model, res.plan, spec,
                info={k: report[k] for k in ("method", "criterion", "target_macs", "checkpoint")})
    atomic_write_text(out_dir / "prune_report.json", json.dumps(report, indent=2))
    rows = [f"| {k} | {before[k]:.6g} | {after[k]:.6g} | "
            f"{f'{after[k] / before[k]:.3f}' if before[k] else 'n/a'} |" for k in before]
    atomic_write_text(out_dir / "prune_report.md", "\n".join([
        f"# Pruning {spec['name']} ({method}, target {target_macs:g} of the MACs) on {name}", "",
        "| | before | after | after / before |", "|---|---|---|---|", *rows, "",
        f"{len(res.history) - 1} removal rounds; pruned checkpoint: pruned.safetensors (load it with "
        f"blockzoo.deploy.prune.load_pruned)", ""]))
    return report


def cmd_prune(a: argparse.Namespace) -> int:
    rep = prune_checkpoint(a.checkpoint, a.out, method=a.method, target_macs=a.target_macs, data=a.data,
                           data_dir=a.data_dir, batch_size=a.batch_size, batches_per_step=a.batches_per_step,
                           per_step=a.per_step, lr=a.lr, criterion=a.criterion, max_train=a.max_train,
                           max_test=a.max_test)
    b, f = rep["before"], rep["after"]
    print(f"pruned {rep['model']}: params {b['params']} -> {f['params']}, MACs {b['macs']} -> {f['macs']}, "
          f"latency {b['latency_ms']:.3g} -> {f['latency_ms']:.3g} ms, accuracy {100 * b['acc']:.2f}% -> "
          f"{100 * f['acc']:.2f}%; wrote {a.out}/pruned.safetensors and prune_report.json")
    return 0


def add_commands(sub: Any) -> None:
    """Add the ``prune`` command to the top-level subparsers ``sub`` (it sets ``fn``)."""
    from blockzoo.cli import int_at_least
    from blockzoo.deploy.prune import CRITERIA, PRUNE_METHODS

    positive = int_at_least(1)
    s = sub.add_parser("prune", help="structured (filter) pruning of a checkpoint; writes it and a report")
    s.add_argument("checkpoint", help="a checkpoint or weights file with a model spec (last.safetensors, ...)")
    s.add_argument("--method", default="taylor", choices=PRUNE_METHODS, help="(default: taylor)")
    s.add_argument("--criterion", default="bn_gate", choices=CRITERIA,
                   help="Taylor FO on the gates after BN (the paper's best) or on the filter weights")
    s.add_argument("--target-macs", type=float, default=0.6, help="fraction of the MACs to keep (default: 0.6)")
    s.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    s.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    s.add_argument("--batch-size", type=positive, default=64, help="fine-tuning batch size (default: 64)")
    s.add_argument("--batches-per-step", type=positive, default=30,
                   help="fine-tuning minibatches between removals (default: 30, the official frequency)")
    s.add_argument("--per-step", type=positive, default=None, help="groups removed per round (default: 2%%)")
    s.add_argument("--lr", type=float, default=0.01, help="fine-tuning SGD learning rate (default: 0.01)")
    s.add_argument("--max-train", type=positive, default=None, help="use only the first N training images")
    s.add_argument("--max-test", type=positive, default=None, help="evaluate on the first N test images only")
    s.add_argument("--out", required=True, help="output folder (pruned.safetensors, prune_report.json/.md)")
    s.set_defaults(fn=cmd_prune)
