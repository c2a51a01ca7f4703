"""blockzoo.train.speedrun: TTA, the airbench schedule, Lookahead, and end-to-end learning on synthetic data."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from blockzoo.train.speedrun import Lookahead, airbench_schedule, predict_tta, speedrun

pytestmark = pytest.mark.usefixtures("one_thread")  # every test here runs on one intra-op thread


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
