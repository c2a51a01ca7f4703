"""blockzoo.train.distill and the trainer's --distill: MEAL V2's loss (KL to the mean of the teachers' softmax plus a
discriminator on the outputs, no hard labels), FerKD's label adaptation and SelfMix, frozen teachers loaded from
blockzoo checkpoints, and a distillation run that resumes exactly."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import blockzoo
from blockzoo.cli import _train_kwargs, build_parser
from blockzoo.errors import ConfigError
from blockzoo.train import TrainConfig, config_hash, train
from blockzoo.train.distill import (
    DISC_LR_SCALE,
    Distiller,
    MealV2Discriminator,
    discriminator_loss,
    ensemble_soft_target,
    ferkd_targets,
    kl_to_target,
    load_teachers,
    selfmix,
)


class Killed(Exception):
    pass


def _data(num_classes: int = 4):
    from blockzoo.data.synthetic import make_synthetic
    return (make_synthetic("train", num_classes=num_classes, image_size=16, channels=1, n=128, noise=0.1,
                           max_shift=1),
            make_synthetic("test", num_classes=num_classes, image_size=16, channels=1, n=64, noise=0.1, max_shift=1))


def _cfg(d: Path, **kw) -> TrainConfig:
    base = dict(model="speednet", model_kwargs={"widths": (8, 8, 8)}, data="synthetic", epochs=2, batch_size=32,
                lr=0.1, warmup_epochs=0.5, progress=False, out_dir=str(d), deterministic=True, threads=1,
                device="cpu", precision="fp32", channels_last=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data):
    """Two teachers written by a 1-epoch tiny run: its checkpoint and its weights file (both loaders)."""
    root = tmp_path_factory.mktemp("teachers")
    train(_cfg(root, epochs=1, seed=1), train_set=data[0], test_set=data[1])
    return [str(root / "last.safetensors"), str(root / "best.safetensors")]


# --------------------------------------------------------------------------------------------------- the losses
def test_kl_loss_hand_computed_on_tiny_logits():
    z = torch.tensor([[0.0, math.log(3.0)]])                # softmax: (1/4, 3/4)
    target = torch.tensor([[0.5, 0.5]])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_to_target(z, target).item() == pytest.approx(want, abs=1e-6)
    # a one-hot target: 0 log 0 = 0, so the KL is the cross-entropy; equal distributions give 0
    assert kl_to_target(z, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-math.log(0.75), abs=1e-6)
    assert kl_to_target(z, torch.tensor([[0.25, 0.75]])).item() == pytest.approx(0.0, abs=1e-6)
    # temperature T: softmax(z / T) against the target, times T^2; batch mean
    t2 = torch.tensor([[0.0, 2 * math.log(3.0)], [0.0, 0.0]])
    want2 = (4 * want + 0.0) / 2
    assert kl_to_target(t2, torch.tensor([[0.5, 0.5], [0.5, 0.5]]), temperature=2.0).item() == pytest.approx(
        want2, abs=1e-6)


def test_ensemble_soft_target_is_the_mean_of_the_softmaxes():
    a, b = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[math.log(3.0), 0.0]])
    assert torch.allclose(ensemble_soft_target([a, b]), torch.tensor([[0.5, 0.5]]))
    # not the softmax of the mean logits (which would be (1/2, 1/2) here too): use unequal magnitudes
    c = torch.tensor([[0.0, math.log(9.0)]])                # (0.1, 0.9)
    assert torch.allclose(ensemble_soft_target([a, c]), torch.tensor([[0.175, 0.825]]))
    assert torch.allclose(ensemble_soft_target([a, c], 2.0), (F.softmax(a / 2, 1) + F.softmax(c / 2, 1)) / 2)


def test_discriminator_paper_and_official_layout_and_its_loss():
    d = MealV2Discriminator(1000)                           # official widths 1000 -> 125 -> 15, then 1 logit
    assert [m.out_features for m in (d.fc1, d.fc2, d.fc3)] == [125, 15, 1]
    assert [m.out_features for m in (MealV2Discriminator(10).fc1, MealV2Discriminator(10).fc2)] == [8, 8]
    assert MealV2Discriminator(1000, official=True).fc3.out_features == 2
    for m in (d.fc1, d.fc2, d.fc3):                         # a constant logit 0: the BCE is log 2
        torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    s, t = torch.randn(3, 1000), torch.randn(3, 1000)
    assert discriminator_loss(d, s, t).item() == pytest.approx(math.log(2), abs=1e-6)
    torch.nn.init.constant_(d.fc3.bias, 1.0)   # logit 1: -log(sigmoid(1)) for the teachers, -log(1 - it) else
    sig = 1 / (1 + math.exp(-1.0))
    want = (-math.log(sig) - math.log(1 - sig)) / 2
    assert discriminator_loss(d, s, t).item() == pytest.approx(want, abs=1e-6)


# ----------------------------------------------------------------------------------------------------- FerKD
def test_ferkd_label_adaptation_on_hand_made_teacher_probabilities():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0],     # true class 0, confident: keeps the soft label
                          [0.3, 0.6, 0.1, 0.0],     # true class 0 at 0.3 < 0.5: calibrated
                          [0.25, 0.25, 0.5, 0.0]])  # true class 2 at exactly 0.5: kept (below the threshold only)
    y = torch.tensor([0, 0, 2])
    targets, calibrated = ferkd_targets(probs, y, threshold=0.5, smoothing=0.1)
    assert calibrated.tolist() == [False, True, False]
    assert torch.equal(targets[0], probs[0]) and torch.equal(targets[2], probs[2])
    assert torch.allclose(targets[1], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    # soft (MixUp) targets: the confidence is the target-weighted probability, the softened label the smoothed mix
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    t2, c2 = ferkd_targets(torch.tensor([[0.1, 0.1, 0.8, 0.0]]), soft, threshold=0.5, smoothing=0.0)
    assert c2.tolist() == [True] and torch.equal(t2, soft)


def test_selfmix_fills_one_box_from_a_shifted_copy_of_the_same_image():
    x = torch.arange(1, 2 * 8 * 8 + 1, dtype=torch.float32).view(2, 1, 8, 8)   # distinct, non-zero pixels
    assert torch.equal(selfmix(x, torch.Generator().manual_seed(0), pad=0), x)  # unshifted: the box is itself
    boxes = 0
    for seed in range(5):
        out = selfmix(x, torch.Generator().manual_seed(seed), pad=2)
        assert torch.equal(out, selfmix(x, torch.Generator().manual_seed(seed), pad=2))       # seeded
        for b in range(2):
            changed = (out[b] != x[b]).any(0)
            if not changed.any():
                continue
            boxes += 1
            rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
            assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()       # one rectangle
            own = set(x[b].flatten().tolist()) | {0.0}                # the same image, or the zero padding
            assert set(out[b][:, changed].flatten().tolist()) <= own
    assert boxes > 0


# ----------------------------------------------------------------------------------------- teachers, options
def test_teachers_are_frozen_in_eval_mode_and_mismatches_are_refused(teachers, tmp_path):
    ts = load_teachers(teachers, num_classes=4, in_chans=1)
    assert len(ts) == 2 and all(not t.training for t in ts)
    assert all(not p.requires_grad for t in ts for p in t.parameters())
    with pytest.raises(ConfigError, match="the student 10 from 1; pass --teacher"):
        load_teachers(teachers, num_classes=10, in_chans=1)
    with pytest.raises(ConfigError, match="the student 4 from 3"):
        load_teachers(teachers, num_classes=4, in_chans=3)


def test_distill_options_are_checked_recorded_and_keep_the_pinned_hashes(teachers):
    assert TrainConfig().distill == "none" and TrainConfig().teachers == [] and TrainConfig().distill_temperature == 1
    assert config_hash(TrainConfig(model="resnet20")) == "c7321608"
    assert config_hash(TrainConfig(model="resnet20", distill="none", teachers=[])) == "c7321608"
    for bad, match in [(dict(distill="meal_v2"), "needs teachers"), (dict(teachers=teachers), "--distill"),
                       (dict(distill="kd", teachers=teachers), "--distill"),
                       (dict(distill="meal_v2", teachers=teachers, distill_temperature=0.0), "--distill-temperature"),
                       (dict(distill="ferkd", teachers=teachers, ferkd_threshold=1.5), "--ferkd-threshold"),
                       (dict(distill="ferkd", teachers=teachers, ferkd_smoothing=1.0), "--ferkd-smoothing"),
                       (dict(distill="ferkd", teachers="a.safetensors"), "list of strings")]:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad).validate()
    on = TrainConfig(distill="meal_v2", teachers=teachers)
    assert on.resolved().weight_decay == 0.0                                   # MEAL V2's recipe default
    assert TrainConfig(distill="meal_v2", teachers=teachers, weight_decay=1e-4).resolved().weight_decay == 1e-4
    assert config_hash(on) != config_hash(TrainConfig())
    a = build_parser().parse_args(["train", "speednet", "--distill", "meal_v2", "--teacher", "a", "--teacher", "b"])
    kw = _train_kwargs(a)
    assert kw["teachers"] == ["a", "b"] and kw["distill"] == "meal_v2"


def _distiller(cfg: TrainConfig, data):
    return Distiller(cfg.resolved(), data[0], torch.device("cpu"))


def test_meal_v2_uses_no_hard_labels_and_trains_the_discriminator(teachers, data, tmp_path):
    from blockzoo.data import Loader
    from blockzoo.registry import create_model
    dist = _distiller(_cfg(tmp_path, distill="meal_v2", teachers=teachers), data)
    x, y = next(iter(Loader(data[0], 16, train=True, seed=0)))
    student = create_model("speednet", num_classes=4, in_chans=1, img_size=16, widths=(8, 8, 8)).train()
    torch.manual_seed(0)
    _, loss = dist.step_loss(student, x, y, 0)
    _, loss_perm = dist.step_loss(student, x, y[torch.randperm(16)], 0)
    _, loss_other = dist.step_loss(student, x, (y + 1) % 4, 0)
    assert loss.item() == loss_perm.item() == loss_other.item()
    # the loss is KL to the ensemble plus the discriminator's BCE; both get gradients, the teachers none
    with torch.no_grad():
        t_logits = [t(x) for t in dist.teachers]
    out = student(x)
    want = kl_to_target(out, ensemble_soft_target(t_logits)) + discriminator_loss(dist.disc, out,
                                                                                  torch.stack(t_logits).mean(0))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dist.disc.parameters())
    assert all(p.grad is None for t in dist.teachers for p in t.parameters())
    # FerKD does use the labels (its calibration); a labelled target differs
    fer = _distiller(_cfg(tmp_path, distill="ferkd", teachers=teachers, ferkd_threshold=1.0), data)
    assert fer.disc is None
    assert fer.step_loss(student, x, y, 0)[1].item() != fer.step_loss(student, x, (y + 1) % 4, 0)[1].item()


# -------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("mode", ["meal_v2", "ferkd"])
def test_distillation_run_completes_resumes_exactly_and_keeps_teachers_out(mode, teachers, data, tmp_path):
    tr, te = data
    cfg = dict(distill=mode, teachers=teachers, epochs=2)
    res = train(_cfg(tmp_path / "a", **cfg), train_set=tr, test_set=te)
    assert res["config"]["distill"] == mode and res["config"]["teachers"] == teachers and res["weight_decay"] == 0.0
    assert 0 <= res["final_test_acc"] <= 1 and math.isfinite(res["final_train_loss"])

    def kill_at_1(m):
        raise Killed
    with pytest.raises(Killed):
        train(_cfg(tmp_path / "b", **cfg), train_set=tr, test_set=te, on_epoch_end=kill_at_1)
    res_b = train(_cfg(tmp_path / "b", **cfg), train_set=tr, test_set=te)      # the same command resumes
    assert res_b["resumed_from_epoch"] == 1 and res_b["final_test_loss"] == res["final_test_loss"]
    sa, sb = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the student checkpoint holds the student (and MEAL V2's discriminator in the trainer extras), no teacher
    student = blockzoo.load_model(tmp_path / "a" / "last.safetensors")
    assert {k.removeprefix("model.") for k in sa if k.startswith("model.")} == set(student.state_dict())
    assert not [k for k in sa if "teacher" in k]
    disc_keys = [k for k in sa if "discriminator" in k]
    assert bool(disc_keys) == (mode == "meal_v2")


def test_discriminator_is_in_the_optimizer_teachers_are_not(teachers, data, tmp_path):
    from blockzoo.train.distributed import from_environment
    from blockzoo.train.trainer import _prepare_model, _Run, _RunFiles, amp_settings, resolve_device
    cfg = _cfg(tmp_path, distill="meal_v2", teachers=teachers).resolved()
    dev = resolve_device("cpu")
    model, name, spec = _prepare_model(cfg, None, data[0])
    run = _Run(cfg, dev, amp_settings("fp32", dev), _RunFiles(tmp_path), model, name, spec, data[0], data[1], 0.0,
               from_environment(dev))
    in_opt = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in run.distiller.disc.parameters())
    assert not any(id(p) in in_opt for t in run.distiller.teachers for p in t.parameters())
    assert run.optimizer.param_groups[-1]["lr_scale"] == DISC_LR_SCALE
    assert run.optimizer.param_groups[-1]["weight_decay"] == 0.0
