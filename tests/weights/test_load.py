"""blockzoo.weights.load: create_model(name, checkpoint_path=FILE) with a blockzoo weights file (one the trainer wrote
too) or checkpoint, whose model spec must match the model built; with a plain state dict in blockzoo's or timm's key
layout (.safetensors / .pth, never executing pickled code); strict errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import blockzoo
from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.train import TrainConfig, make_model_spec, save_checkpoint, save_weights, train
from blockzoo.weights import read_state_dict, to_timm_state_dict


def resnet20(**kw) -> torch.nn.Module:
    return blockzoo.create_model("resnet20", num_classes=4, in_chans=1, **kw)


def spec(**kw) -> dict:
    base = dict(slots={}, model_kwargs={}, num_classes=4, in_chans=1, img_size=None)
    return make_model_spec("resnet20", **{**base, **kw})


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sb = b.state_dict()
    for k, v in a.state_dict().items():
        assert torch.equal(v, sb[k]), k


@pytest.fixture
def saved(tmp_path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(1)
    model = resnet20(attn="se(reduction=8)")
    path = tmp_path / "w.safetensors"
    save_weights(path, model, model_spec=spec(slots={"attn": "se(reduction=8)"}))
    return model, path


def tiny_run(out_dir: Path, **kw) -> TrainConfig:
    from blockzoo.data.synthetic import make_synthetic

    tr = make_synthetic("train", num_classes=4, image_size=8, channels=1, n=32, noise=0.1, max_shift=1)
    te = make_synthetic("test", num_classes=4, image_size=8, channels=1, n=16, noise=0.1, max_shift=1)
    cfg = TrainConfig(**{**dict(model="resnet20", data="synthetic", epochs=1, batch_size=32, lr=0.1,
                                warmup_epochs=0, progress=False, out_dir=str(out_dir), threads=1, device="cpu",
                                precision="fp32", channels_last=False), **kw})
    train(cfg, None, tr, te)
    return cfg


@pytest.mark.slow   # about 1 s of training, 3 s with the trainer's first imports
def test_a_weights_file_saved_by_the_trainer_round_trips_through_create_model(tmp_path):
    tiny_run(tmp_path / "run", slots={"attn": "eca"})
    for name in ("best.safetensors", "last.safetensors"):   # weights file and full checkpoint
        path = tmp_path / "run" / name
        model = blockzoo.create_model("resnet20", num_classes=4, in_chans=1, img_size=8, attn="eca",
                                      checkpoint_path=str(path))
        assert_same_weights(model, blockzoo.load_model(path))


@pytest.mark.slow   # trains for an epoch
def test_train_checkpoint_path_starts_from_the_file(tmp_path, saved):
    model, path = saved
    tiny_run(tmp_path / "run", slots={"attn": "se(reduction=8)"}, checkpoint_path=str(path), lr=1e-9,
             weight_decay=0.0)
    trained = blockzoo.load_model(tmp_path / "run" / "last.safetensors").state_dict()
    for k, v in model.state_dict().items():
        if v.is_floating_point() and "running_" not in k:   # batch statistics move, weights (lr 1e-9) do not
            torch.testing.assert_close(trained[k], v, rtol=0, atol=1e-6, msg=k)


def test_train_refuses_weights_for_a_ready_made_model(tmp_path):
    cfg = TrainConfig(model="resnet20", data="synthetic", out_dir=str(tmp_path), progress=False,
                      pretrained=True)
    with pytest.raises(ConfigError, match="--pretrained / --checkpoint-path"):
        train(cfg, torch.nn.Linear(2, 2), [], [])


def test_a_weights_file_loads_with_equivalent_slot_spellings(saved):
    model, path = saved
    assert_same_weights(resnet20(attn=("se", {"reduction": 8}), checkpoint_path=str(path)), model)


def test_a_checkpoint_file_loads(tmp_path, saved):
    model, _ = saved
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, model_spec=spec(slots={"attn": "se(reduction=8)"}))
    assert_same_weights(resnet20(attn="se(reduction=8)", checkpoint_path=str(path)), model)


@pytest.mark.parametrize("kw, message", [
    (dict(attn="eca"), r"holds a resnet20 with attn='se\(reduction=8\)', this one has attn='eca'"),
    (dict(attn="se"), r"with attn='se\(reduction=8\)', this one has attn='se'"),
    (dict(attn="se(reduction=8)", act="gelu"), r"with act='relu', this one has act='gelu'"),  # same shapes
])
def test_a_weights_file_of_another_configuration_is_refused(saved, kw, message):
    _, path = saved
    with pytest.raises(CheckpointError, match=message) as e:
        resnet20(checkpoint_path=str(path), **kw)
    assert "blockzoo.load_model" in str(e.value)


def test_a_weights_file_of_another_model_or_class_count_is_refused(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="holds a resnet20, not a resnet32"):
        blockzoo.create_model("resnet32", num_classes=4, in_chans=1, checkpoint_path=str(path))
    with pytest.raises(CheckpointError, match="num_classes=4, this one has num_classes=10.*reset_classifier"):
        blockzoo.create_model("resnet20", num_classes=10, in_chans=1, attn="se(reduction=8)",
                              checkpoint_path=str(path))


def test_a_weights_file_without_spec_is_checked_key_by_key(tmp_path):
    model = resnet20()
    path = tmp_path / "w.safetensors"
    save_weights(path, model)   # no model_spec
    assert_same_weights(resnet20(checkpoint_path=str(path)), model)
    with pytest.raises(CheckpointError, match="missing keys.*attn"):
        resnet20(attn="eca", checkpoint_path=str(path))


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_a_plain_blockzoo_state_dict_loads(tmp_path, suffix):
    model = resnet20()
    path = tmp_path / f"sd{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    assert_same_weights(resnet20(checkpoint_path=str(path)), model)


def test_training_checkpoint_wrappers_and_ddp_prefixes_are_unwrapped(tmp_path):
    model = resnet20()
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    assert_same_weights(resnet20(checkpoint_path=str(path)), model)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_state_dict_in_timms_layout_loads(tmp_path, suffix, timm_layout, timm_layout_state):
    state = timm_layout_state(timm_layout("mobilenetv2_100"))
    path = tmp_path / f"timm{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = blockzoo.create_model("mobilenetv2_100", checkpoint_path=str(path))
    assert torch.equal(model.state_dict()["blocks.3.conv_pwl.norm.weight"], state["blocks.2.0.bn3.weight"])
    assert_same_weights(model, blockzoo.create_model("mobilenetv2_100", checkpoint_path=str(path)))
    back = to_timm_state_dict(model)
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())


def test_a_timm_state_dict_that_does_not_fit_names_the_timm_key(tmp_path, timm_layout, timm_layout_state):
    state = timm_layout_state(timm_layout("resnet18"))
    state["layer3.1.bn2.weight"] = torch.ones(7)
    path = tmp_path / "timm.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"timm key 'layer3\.1\.bn2\.weight' has shape \(7,\), expected "
                                              r"\(256,\)"):
        blockzoo.create_model("resnet18", checkpoint_path=str(path))


def test_a_blockzoo_state_dict_that_does_not_fit_names_keys_and_shapes(tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(resnet20().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"fc\.weight: file \(4, 64\) vs model \(5, 64\)"):
        blockzoo.create_model("resnet20", num_classes=5, in_chans=1, checkpoint_path=str(path))


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_pickled_code_is_never_executed(tmp_path):
    _Payload.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="never executes"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_bad_files_raise_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resnet20(checkpoint_path=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        read_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        resnet20(checkpoint_path=str(tmp_path / "junk.safetensors"))
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ConfigError, match="unknown file type"):
        read_state_dict(tmp_path / "w.npz")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pth")


def test_pretrained_and_a_checkpoint_path_together_are_refused(saved):
    _, path = saved
    with pytest.raises(ConfigError, match="not both"):
        resnet20(pretrained=True, checkpoint_path=str(path))
