"""blockzoo.train.config: TrainConfig defaults and validation."""
from __future__ import annotations

import pytest

from blockzoo.errors import ConfigError
from blockzoo.train import (
    TrainConfig,
)


def test_config_defaults_and_validation():
    r = TrainConfig().resolved()
    assert (r.optimizer, r.schedule, r.nesterov, r.label_smoothing) == ("sgd", "onecycle", True, 0.1)
    assert (r.precision, r.channels_last) == ("auto", True)
    assert r.lr == pytest.approx(0.1) and r.weight_decay == pytest.approx(5e-4) and r.eval_batch_size == 256
    assert TrainConfig(batch_size=512).resolved().lr == pytest.approx(0.4)   # linear scaling per 128
    a = TrainConfig(optimizer="adamw", batch_size=512).resolved()
    assert a.lr == pytest.approx(2e-3) and a.weight_decay == pytest.approx(0.05)
    assert TrainConfig(lr=0.3, weight_decay=0.0).resolved().lr == 0.3
    assert TrainConfig.from_dict(TrainConfig(epochs=7).to_dict()) == TrainConfig(epochs=7)
    for bad in [dict(optimizer="adam"), dict(schedule="step"), dict(precision="fp8"), dict(epochs=0),
                dict(lr=-1.0), dict(label_smoothing=1.0), dict(eval_every=0), dict(tta_thresholds=[1.5])]:
        with pytest.raises(ValueError, match="--"):
            TrainConfig(**bad).resolved()
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})


def test_data_and_augmentation_options(tmp_path):
    r = TrainConfig().resolved()
    assert (r.test_subset, r.img_size, r.verify, r.aa, r.reprob, r.mixup, r.cutmix) == (None, None, True, None, 0, 0, 0)
    TrainConfig(aa="rand-m9-n2", reprob=0.25, mixup=0.8, cutmix=1.0, test_subset=10).validate()
    TrainConfig(data=str(tmp_path), img_size=32).validate()
    for bad, match in [(dict(aa="rand-m12"), "--aa"), (dict(aa="autoaugment"), "--aa"), (dict(reprob=1.5), "--reprob"),
                       (dict(mixup=-0.1), "--mixup"), (dict(cutmix=float("inf")), "--cutmix"),
                       (dict(test_subset=0), "--test-subset"), (dict(img_size=0), "--img-size"),
                       (dict(reprob=True), "--reprob"), (dict(data="cifar10", img_size=64), "image folders only")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad).validate()
    # the default run folder names an image folder by its name, not by its path
    (tmp_path / "my images" / "train").mkdir(parents=True)
    assert TrainConfig(data=str(tmp_path / "my images")).resolved().out_dir == "runs/resnet20-my images-seed0"
    assert TrainConfig(data="FashionMNIST").resolved().out_dir == "runs/resnet20-fashion-mnist-seed0"


def test_recipes_are_presets_of_fields():
    """A recipe sets defaults only (fields given win); ``fast`` is the speed run's recipe with airbench's summed-loss
    lr and weight decay converted to the trainer's mean loss (same per-step update and decay)."""
    from blockzoo.train.config import RECIPES
    from blockzoo.train.speedrun import SPEEDRUN_DEFAULTS as sr
    fast = TrainConfig.from_recipe("fast", model="speednet").validate()
    assert fast.model == "speednet" and fast.lookahead and fast.data_init and fast.test_time_aug == 2
    for k in ("epochs", "batch_size", "momentum", "label_smoothing"):
        assert getattr(fast, k) == sr[k], k
    assert fast.norm_lr_scale == sr["bias_scaler"] and fast.schedule == "airbench"
    assert fast.warmup_epochs / fast.epochs == sr["warmup"]
    kilo = 1 + 1 / (1 - sr["momentum"])            # airbench: lr / (1024 * kilo) on a loss summed over 1024
    assert fast.lr == pytest.approx(sr["lr"] / kilo)
    assert fast.lr * fast.weight_decay == pytest.approx(sr["weight_decay"] / kilo)
    assert TrainConfig.from_recipe("fast", epochs=3, lookahead=False).epochs == 3
    assert TrainConfig.from_recipe("default") == TrainConfig() and RECIPES["default"] == {}
    with pytest.raises(ConfigError, match="--recipe"):
        TrainConfig.from_recipe("quick")
