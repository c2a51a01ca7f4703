"""blockzoo.train.evaluation (``blockzoo eval``): the trainer's evaluate() with a confusion matrix, and a model
evaluated from its weights file alone: accuracy, per-class accuracy, confusion matrix (eval.json + confusion.png)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn as nn
from PIL import Image

import blockzoo.data
from blockzoo.errors import ConfigError
from blockzoo.train import TrainConfig, evaluate, train
from blockzoo.train.evaluation import evaluate_checkpoint, write_eval_report


class Fixed(nn.Module):
    """Predicts the class stored in the first pixel of each image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_evaluate_confusion_matrix_by_hand():
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    y = torch.tensor([0, 1, 2, 2, 2, 1, 1])
    x = pred.float().view(-1, 1, 1, 1)
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    r = evaluate(Fixed(), batches, num_classes=3)
    # row: true class, column: predicted class
    assert r["confusion"] == [[1, 0, 0], [1, 1, 1], [0, 1, 2]]
    assert r["acc"] == pytest.approx(4 / 7) and r["n"] == 7
    assert "confusion" not in evaluate(Fixed(), batches)       # unchanged without num_classes


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny resnet20 run on the synthetic set (1 step), with its checkpoint, weights and result.json."""
    d = tmp_path_factory.mktemp("run")
    res = train(TrainConfig(model="resnet20", data="synthetic", subset=32, epochs=1, batch_size=32, progress=False,
                            precision="fp32", channels_last=False, threads=1, device="cpu", out_dir=str(d)))
    return d, res


def test_evaluate_checkpoint_matches_the_trainers_test_accuracy(run):
    d, res = run
    r = evaluate_checkpoint(d / "last.safetensors", device="cpu")   # dataset from the checkpoint's config
    assert r["data"] == "synthetic" and r["model"] == "resnet20" and r["split"] == "test"
    assert r["acc"] == res["final_test_acc"] and r["loss"] == pytest.approx(res["final_test_loss"], rel=1e-5)
    cm = r["confusion"]
    assert len(cm) == 10 and sum(map(sum, cm)) == r["n"] == res["test_size"]
    assert r["per_class_n"] == [sum(row) for row in cm]
    assert r["per_class_acc"] == [row[i] / sum(row) for i, row in enumerate(cm)]
    assert sum(cm[i][i] for i in range(10)) / r["n"] == r["acc"]
    assert r["classes"] == blockzoo.data.load_dataset("synthetic", "test").classes
    # best.safetensors (a weights file: no config) finds its dataset in the run folder's result.json
    assert evaluate_checkpoint(d / "best.safetensors", device="cpu")["data"] == "synthetic"


def test_eval_report_files(run, tmp_path):
    d, _ = run
    r = evaluate_checkpoint(d / "best.safetensors", "synthetic", device="cpu")
    files = write_eval_report(r, tmp_path / "ev")
    assert json.loads(files["json"].read_text()) == json.loads(json.dumps(r))
    with Image.open(files["png"]) as im:
        assert im.format == "PNG" and min(im.size) > 100


def test_dataset_that_does_not_fit_the_model_or_is_unknown(run, tmp_path, monkeypatch):
    d, _ = run
    weights = tmp_path / "weights.safetensors"
    shutil.copy(d / "best.safetensors", weights)               # outside its run folder: no dataset recorded
    with pytest.raises(ConfigError, match="does not record its dataset.*--data"):
        evaluate_checkpoint(weights, device="cpu")
    from blockzoo.data.synthetic import make_synthetic
    monkeypatch.setattr(blockzoo.data, "load_split", lambda opts, split: make_synthetic(split, num_classes=5, n=16))
    with pytest.raises(ConfigError, match="for 10 classes but other has 5; pass the --data the model was trained on"):
        evaluate_checkpoint(weights, "other", device="cpu")


def test_an_image_folder_run_is_tested_at_its_training_size(tmp_path, monkeypatch, make_image_folder):
    root = make_image_folder(24, 9, image_size=12)
    d = tmp_path / "run"
    res = train(TrainConfig(model="resnet20", data=str(root), img_size=8, test_subset=6, epochs=1, batch_size=8,
                            progress=False, precision="fp32", channels_last=False, threads=1, device="cpu",
                            out_dir=str(d)))
    assert res["test_size"] == 6
    r = evaluate_checkpoint(d / "last.safetensors", device="cpu")
    # the whole val split (not the run's --test-subset), resized to the run's --img-size 8 as in training
    assert r["data"] == str(root) and r["n"] == 9 and r["classes"] == ["class0", "class1", "class2"]
    loaded = []
    real = blockzoo.data.load_split
    monkeypatch.setattr(blockzoo.data, "load_split", lambda opts, split: loaded.append(opts) or real(opts, split))
    evaluate_checkpoint(d / "last.safetensors", device="cpu")
    assert (loaded[0].img_size, loaded[0].test_subset, loaded[0].verify) == (8, None, True)


def test_evaluate_runs_without_autograd():
    """evaluate() records no graph (no_grad), whatever the caller's grad mode."""
    seen = []

    class Probe(torch.nn.Linear):
        def forward(self, x):
            seen.append(torch.is_grad_enabled())
            return super().forward(x.flatten(1))

    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    res = evaluate(Probe(3, 2), data)
    assert seen == [False] and res["n"] == 4
