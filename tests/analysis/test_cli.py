"""``blockzoo analyze``: every tool writes its JSON and PNGs; bad arguments are one-line errors."""
import argparse
import json

import pytest

from blockzoo.analysis.cli import add_commands, run_analysis
from blockzoo.errors import ConfigError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_commands(p)
    return p.parse_args(list(argv))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A resnet20 weights file for the synthetic set (10 classes, 3 x 32 x 32; untrained: the tools need only a
    file that rebuilds its model)."""
    from blockzoo import create_model
    from blockzoo.train.checkpoint import make_model_spec, save_weights
    path = tmp_path_factory.mktemp("ckpt") / "w.safetensors"
    spec = make_model_spec("resnet20", slots={}, model_kwargs={}, num_classes=10, in_chans=3, img_size=None)
    save_weights(path, create_model("resnet20", num_classes=10, in_chans=3), model_spec=spec)
    return str(path)


@pytest.mark.parametrize("tool,extra,pngs", [
    ("erf", ["--images", "2"], ["erf.png"]),
    ("eigencam", ["--images", "3", "--layer", "layers.1"], ["eigencam.png"]),
    pytest.param("linearscope", [], ["linearscope_rows.png"], marks=pytest.mark.slow),
    pytest.param("landscape", ["--images", "16", "--points", "3"], ["landscape.png"], marks=pytest.mark.slow),
    ("robustness", ["--severities", "1", "--images", "32"], []),
])
def test_tools_on_a_checkpoint(tool, extra, pngs, checkpoint, tmp_path):
    res = run_analysis(_args(tool, checkpoint, "--out", str(tmp_path), "--data", "synthetic", *extra))
    rec = json.loads((tmp_path / f"{tool}.json").read_text())
    assert rec["tool"] == tool and rec["target"] == checkpoint
    assert sorted(p.name for p in res["pngs"]) == pngs and all((tmp_path / p).exists() for p in pngs)


def test_model_name_with_random_images(tmp_path):
    res = run_analysis(_args("erf", "resnet20", "--out", str(tmp_path), "--images", "1", "--input", "1,28,28"))
    assert res["result"]["layer"] == "layers.2" and res["result"]["input_size"] == [28, 28]
    with pytest.raises(ConfigError, match="--data"):
        run_analysis(_args("landscape", "resnet20", "--out", str(tmp_path)))
    with pytest.raises(ConfigError, match="C,H,W"):
        run_analysis(_args("erf", "resnet20", "--out", str(tmp_path), "--input", "28,28"))
    with pytest.raises(SystemExit):
        _args("landscape", "resnet20", "--out", str(tmp_path), "--points", "4")
