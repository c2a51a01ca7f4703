"""Corruptions by hand and the robustness table on the synthetic dataset."""
import pytest
import torch
import torch.nn as nn

from blockzoo.analysis import robustness
from blockzoo.analysis.robustness import SEVERITIES, corrupt
from blockzoo.errors import ConfigError


def test_contrast_by_hand():
    x = torch.tensor([0.0, 0.5, 1.0, 0.5]).view(1, 1, 2, 2)     # mean 0.5
    out = corrupt(x, "contrast", 2)                             # c = 0.5
    torch.testing.assert_close(out, torch.tensor([0.25, 0.5, 0.75, 0.5]).view(1, 1, 2, 2))


def test_blur_keeps_constant_images_and_mass():
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(corrupt(flat, "gaussian_blur", 5), flat)
    dot = torch.zeros(1, 1, 15, 15)
    dot[0, 0, 7, 7] = 1.0
    out = corrupt(dot, "gaussian_blur", 5)                       # sigma 1: the mass stays (far from the border)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5) and float(out[0, 0, 7, 7]) < 0.2
    assert torch.equal(out, out.flip(-1)) and torch.equal(out, out.transpose(-1, -2))


def test_noise_level_and_seed():
    x = torch.full((4, 1, 32, 32), 0.5)
    a = corrupt(x, "gaussian_noise", 5, torch.Generator().manual_seed(0))
    b = corrupt(x, "gaussian_noise", 5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and float((a - x).std()) == pytest.approx(SEVERITIES["gaussian_noise"][4], rel=0.05)
    with pytest.raises(ConfigError):
        corrupt(x, "fog", 1)
    with pytest.raises(ConfigError):
        corrupt(x, "contrast", 6)


def test_robustness_table():
    from blockzoo.data import load_dataset
    ds = load_dataset("synthetic", "test", n=64, image_size=8, channels=1, num_classes=4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    res = robustness(model, ds, severities=(1, 5), batch_size=32)
    assert set(res["corrupted"]) == set(SEVERITIES) and set(res["corrupted"]["contrast"]) == {1, 5}
    assert res["n"] == 64 and 0 <= res["clean"] <= 1
    accs = [a for row in res["corrupted"].values() for a in row.values()]
    assert res["mean_corrupted"] == pytest.approx(sum(accs) / len(accs))
    # a constant classifier is unaffected by any corruption
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    const[1].weight.data.zero_()
    const[1].bias.data = torch.tensor([0.0, 1.0, 0.0, 0.0])
    res = robustness(const, ds, severities=(3,))
    assert all(a == res["clean"] for row in res["corrupted"].values() for a in row.values())
