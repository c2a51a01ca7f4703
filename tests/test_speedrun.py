"""Tests of the fast recipe (blockzoo.train.speedrun) and SpeedNet (blockzoo.models.speednet, after airbench,
arXiv:2404.00498): end-to-end learning on synthetic data, TTA = hand-computed average of flipped/translated
predictions, whitening init gives identity second moment, lookahead/schedule arithmetic, registry entries."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockzoo import create_model
from blockzoo.models.speednet import init_whitening, patch_second_moment
from blockzoo.train.speedrun import Lookahead, airbench_schedule, predict_tta, speedrun


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------------------------ model
def test_speednet_registered_param_count():
    m = create_model("speednet")
    # whiten 8x1x2x2 + 8; convs 9 * (8*64 + 64*64 + 64*128 + 128*128 + 128*256 + 256*256); BN 2 x (64+64+128+128+
    # 256+256); fc 256 x 10 (no bias)
    assert nparams(m) == 1_151_784
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == 1_151_784 - 32 - (64 + 64 + 128 + 128 + 256 + 256)  # frozen whitening weight and BN scales
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert m.whiten.out_channels == 8 and m.fc.bias is None


def test_airbench94_param_count():
    m = create_model("speednet_airbench94")
    assert nparams(m) == 312 + 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256) + 4 * (64 + 256 + 256) + 2560
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_speednet_dirac_init_and_logit_scale():
    m = create_model("speednet", widths=(16, 16, 32)).eval()
    w = m.groups[1].conv1.weight  # 16 -> 16: the first 16 filters are identity kernels
    assert torch.equal(w[:, :, 1, 1], torch.eye(16)) and w[:, :, 0].abs().sum() == 0
    f = torch.randn(3, 32, 3, 3)
    assert torch.allclose(m.forward_head(f), m.fc(f.amax((2, 3))) / 9)


# ------------------------------------------------------------------------------------------------ whitening
def test_whitening_init_whitens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 12, 12, generator=g)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)  # spatially correlated -> non-white patches
    x[:, 1] += 0.5 * x[:, 0]
    conv = nn.Conv2d(3, 24, 2, bias=False)
    evals = init_whitening(conv, x, eps=1e-6)
    assert evals.shape == (12,) and bool((evals[:-1] >= evals[1:]).all())  # descending
    with torch.no_grad():
        y = conv(x.double().float())
    feats = y.permute(0, 2, 3, 1).reshape(-1, 24).double()
    m2 = feats.T @ feats / feats.shape[0]
    half = m2[:12, :12]
    assert torch.allclose(half, torch.eye(12, dtype=torch.float64), atol=2e-3)
    assert torch.allclose(m2[12:, 12:], half) and torch.allclose(m2[:12, 12:], -half)
    # the raw patches are far from white (so the test would fail without the init)
    raw = patch_second_moment(x, 2)
    assert (raw - torch.eye(12, dtype=torch.float64)).abs().max() > 0.3


def test_patch_second_moment_by_hand():
    x = torch.arange(9.0).view(1, 1, 3, 3)  # 2x2 patches: [0,1,3,4], [1,2,4,5], [3,4,6,7], [4,5,7,8]
    p = torch.tensor([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=torch.float64)
    assert torch.allclose(patch_second_moment(x, 2), p.T @ p / 4)


def test_init_whitening_rejects_wrong_width():
    with pytest.raises(ValueError, match="8 output channels"):
        init_whitening(nn.Conv2d(1, 6, 2), torch.randn(4, 1, 8, 8))


# ------------------------------------------------------------------------------------------------------ TTA
def test_tta_is_average_of_flipped_and_translated_predictions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 5, 7), nn.Tanh(), nn.Linear(7, 3))
    x = torch.randn(2, 2, 4, 5)
    v = -0.7

    def shift(img, s, fill=(v, v)):  # content moves by (s, s); vacated pixels = fill[c], by explicit indexing
        out = torch.empty_like(img)
        for c, f in enumerate(fill):
            out[:, c] = f
        h, w = img.shape[-2:]
        for i in range(h):
            for j in range(w):
                si, sj = i - s, j - s
                if 0 <= si < h and 0 <= sj < w:
                    out[..., i, j] = img[..., si, sj]
        return out

    def flip(img):
        return img[..., torch.arange(img.shape[-1] - 1, -1, -1)]

    views = [x, flip(x)] + [f(shift(x, s)) for s in (1, -1) for f in (lambda t: t, flip)]
    weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    with torch.no_grad():
        expected = sum(wt * model(vw) for wt, vw in zip(weights, views))
        assert torch.allclose(predict_tta(model, x, 2, pad_value=v), expected, atol=1e-6)
        assert torch.allclose(predict_tta(model, x, 1), 0.5 * (model(x) + model(flip(x))), atol=1e-6)
        assert torch.equal(predict_tta(model, x, 0), model(x))
        fill = (-0.7, 0.3)  # one fill value per channel
        views = [x, flip(x)] + [f(shift(x, s, fill)) for s in (1, -1) for f in (lambda t: t, flip)]
        expected_pc = sum(wt * model(vw) for wt, vw in zip(weights, views))
        got = predict_tta(model, x, 2, pad_value=torch.tensor(fill))
        assert torch.allclose(got, expected_pc, atol=1e-6) and not torch.allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError):
        predict_tta(model, x, 3)


# --------------------------------------------------------------------------------------- schedule / lookahead
def test_airbench_schedule_shape():
    s = airbench_schedule(10, warmup=0.2)
    assert len(s) == 11 and s[0] == pytest.approx(0.2) and s[2] == pytest.approx(1.0) and s[10] == 0.0
    assert s[1] == pytest.approx(0.6) and s[6] == pytest.approx(0.5)


def test_lookahead_update_by_hand():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    la = Lookahead(m)
    with torch.no_grad():
        m.weight.fill_(3.0)
    la.update(m, decay=0.75)  # ema = 0.75 * 1 + 0.25 * 3 = 1.5, copied back into the model
    assert m.weight.item() == pytest.approx(1.5) and la.ema["weight"].item() == pytest.approx(1.5)
    with torch.no_grad():
        m.weight.fill_(5.0)
    la.update(m, decay=1.0)  # decay 1 installs the EMA unchanged
    assert m.weight.item() == pytest.approx(1.5)


# ------------------------------------------------------------------------------------------------ end to end
def test_speedrun_learns_synthetic():
    # a tiny net (widths 16/16/32, unscaled logits) for 32 steps on 16 px synthetic images; chance is 0.1
    r = speedrun(seed=0, data="synthetic", budget=None, tta=True, epochs=4, batch_size=128, threads=1, lr=20.0,
                 model_kwargs=dict(widths=(16, 16, 32), logit_scale=1.0), whiten_samples=256, eval_batch_size=256,
                 data_kwargs=dict(image_size=16, channels=1, noise=0.3))
    assert r["steps"] == r["total_steps"] == 4 * (1024 // 128)
    assert [c["epoch"] for c in r["curve"]] == [1, 2, 3, 4]
    times = [c["train_time_s"] for c in r["curve"]]
    assert times == sorted(times) and r["train_time_s"] == pytest.approx(times[-1])
    assert r["final_test_acc"] >= 0.6 and r["final_test_acc"] > r["curve"][0]["test_acc"] + 0.2
    assert r["curve"][-1]["train_loss"] < r["curve"][0]["train_loss"] - 0.4
    assert r["final_tta_acc"] >= 0.6 and r["tta_eval_time_s"] > 0 and r["eval_time_s"] > 0
    assert r["time_to_acc"]["0.90"] is None  # never reached -> reported as None, not as a time
    assert r["img_per_s"] > 0 and r["macs_per_image"] > 0 and r["gflops"] > 0
    assert torch.get_num_threads() == 1


def test_speedrun_budget_stops_and_holdout():
    r = speedrun(seed=1, data="synthetic", budget=1e-9, tta=False, epochs=3, batch_size=128, threads=1, holdout=128,
                 model_kwargs=dict(widths=(16, 16, 16)), whiten_samples=128,
                 data_kwargs=dict(image_size=16, channels=1))
    assert r["stopped_reason"] == "budget" and r["steps"] == 1 and r["final_tta_acc"] is None
    assert r["train_size"] == 1024 - 128 and r["final_val_acc"] is not None


def test_speedrun_rejects_bad_args():
    with pytest.raises(ValueError, match="precision"):
        speedrun(data="synthetic", precision="fp16")
    with pytest.raises(ValueError, match="budget"):
        speedrun(data="synthetic", budget=0)
    assert np.isclose(airbench_schedule(5)[-1], 0.0)
