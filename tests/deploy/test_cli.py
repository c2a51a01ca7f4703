"""The ``prune`` command (blockzoo.deploy.cli): pruned checkpoint + report, reloaded without pickles."""
import argparse
import json

import pytest
import torch

from blockzoo.deploy.cli import add_commands
from blockzoo.deploy.prune import load_pruned
from blockzoo.registry import create_model
from blockzoo.train.checkpoint import make_model_spec, save_checkpoint
from helpers import n_params


@pytest.mark.slow
def test_prune_command_writes_checkpoint_and_report(tmp_path):
    model = create_model("resnet20", num_classes=10)
    spec = make_model_spec("resnet20", slots={}, model_kwargs={}, num_classes=10, in_chans=3, img_size=None)
    ckpt = tmp_path / "last.safetensors"
    save_checkpoint(ckpt, model=model, model_spec=spec, config={"data": "synthetic"})
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "pruned"
    a = parser.parse_args(["prune", str(ckpt), "--target-macs", "0.9", "--data", "synthetic", "--max-train", "16",
                           "--max-test", "16", "--batch-size", "8", "--batches-per-step", "2", "--per-step", "60",
                           "--out", str(out)])
    assert a.fn(a) == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["after"]["macs"] <= 0.9 * rep["before"]["macs"] and rep["after"]["params"] < rep["before"]["params"]
    assert set(rep["before"]) == {"params", "macs", "latency_ms", "acc", "loss"}
    assert "| macs |" in (out / "prune_report.md").read_text()
    pruned = load_pruned(str(out / "pruned.safetensors"))
    assert n_params(pruned) == rep["after"]["params"]
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
