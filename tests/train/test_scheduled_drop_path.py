"""ScheduledDropPath (NASNet, Zoph et al. 2018, Sec. 4.1; ``blockzoo.blocks.common.drop``): the drop probability is
``drop_prob * progress``; the trainer drives ``progress = global step / total steps`` through ``set_drop_progress``;
eval mode is the identity."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from blockzoo import ConfigError, create_model
from blockzoo.blocks.common.drop import DropPath, ScheduledDropPath
from blockzoo.train import train
from helpers import Tiny, tiny_synthetic, tiny_train_cfg

N = 40_000   # samples per frequency check: the drop rate is measured to about +-0.006 (3 sigma)


def _drop_rate(m: nn.Module, seed: int = 0) -> tuple[float, torch.Tensor]:
    """(fraction of samples zeroed, the kept values) of ``m`` on a batch of ones."""
    torch.manual_seed(seed)
    y = m(torch.ones(N, 1))
    return float((y == 0).float().mean()), y[y != 0]


@pytest.mark.parametrize("progress,prob", [(0.0, 0.0), (0.5, 0.2), (1.0, 0.4)])
def test_probability_at_start_middle_and_end(progress, prob):
    """drop_prob 0.4: progress 0 -> p = 0 (nothing dropped, the input itself), 0.5 -> 0.2, 1 -> 0.4; the kept samples
    are scaled by 1 / (1 - p) (1.25 at the middle, 1 / 0.6 at the end)."""
    m = ScheduledDropPath(0.4).train()
    m.set_drop_progress(progress)
    assert m.current_prob == pytest.approx(prob)
    rate, kept = _drop_rate(m)
    assert abs(rate - prob) < 0.006
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - prob)))
    if progress == 0.0:
        x = torch.randn(4, 3)
        assert m(x) is x


def test_off_in_eval():
    m = ScheduledDropPath(0.4).eval()
    m.set_drop_progress(1.0)
    x = torch.randn(8, 3, 2, 2)
    assert m(x) is x


def test_a_plain_drop_path_until_scheduled():
    """Left alone (no trainer) it is DropPath at the full rate, with the same per-sample mask (same seed, same
    numbers)."""
    s, d = ScheduledDropPath(0.3).train(), DropPath(0.3).train()
    assert s.progress == 1.0 and isinstance(s, DropPath)
    torch.manual_seed(3)
    a = s(torch.ones(64, 2, 3))
    torch.manual_seed(3)
    torch.testing.assert_close(a, d(torch.ones(64, 2, 3)))


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="progress"):
        ScheduledDropPath(0.2).set_drop_progress(1.5)
    with pytest.raises(ConfigError, match="drop_prob"):
        ScheduledDropPath(1.0)


class _Recorder(Tiny):
    """The trainer tests' Tiny model with a ScheduledDropPath before the classifier; records the drop probability
    of every training forward."""

    def __init__(self) -> None:
        super().__init__()
        self.sdp = ScheduledDropPath(0.4)
        self.seen: list[float] = []
        self.sdp.register_forward_pre_hook(lambda mod, _: self.seen.append(mod.current_prob) if mod.training else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(self.sdp(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)))


def test_the_trainer_drives_the_schedule(tmp_path):
    """3 epochs of 4 steps: step k trains with p = 0.4 * k / 12 -- 0 at the start, 0.2 at the middle (step 6),
    0.4 * 11/12 at the last step -- and evaluation runs with the module in eval mode (nothing recorded)."""
    tr, te = tiny_synthetic()
    model = _Recorder()
    train(tiny_train_cfg(tmp_path), model, tr, te)
    assert len(model.seen) == 12
    assert model.seen == pytest.approx([0.4 * k / 12 for k in range(12)])
    assert model.seen[0] == 0.0 and model.seen[6] == pytest.approx(0.2)
    assert model.sdp.progress == pytest.approx(11 / 12)


def test_nasnet_cells_get_the_rate_by_depth_and_progress():
    """In a NASNet the final rate of cell i (of n) is drop_path_rate * (i + 1) / n (TF-slim's layer ratio): the last
    cell gets drop_path_rate; every one follows the progress the trainer sets."""
    m = create_model("nasnetacifar_tiny", drop_path_rate=0.3)
    sdp = [c.drop_path for c in m.cells]
    assert [s.drop_prob for s in sdp] == pytest.approx([0.3 * (i + 1) / 8 for i in range(8)])
    for s in m.modules():
        if hasattr(s, "set_drop_progress"):
            s.set_drop_progress(0.5)
    assert sdp[-1].current_prob == pytest.approx(0.15)
    assert not any(isinstance(x, DropPath) for x in create_model("nasnetacifar_tiny").modules())


def test_the_trainer_drives_a_registered_nasnet(tmp_path):
    """Every ScheduledDropPath of a NASNet gets the trainer's progress: after one epoch of 4 steps, that of the last
    step (3/4), so the last cell (final rate 0.3) trains its last step at p = 0.225."""
    tr, te = tiny_synthetic()
    model = create_model("nasnetacifar_tiny", num_classes=4, in_chans=1, img_size=8, drop_path_rate=0.3)
    train(tiny_train_cfg(tmp_path, epochs=1), model, tr, te)
    sdp = [m for m in model.modules() if isinstance(m, ScheduledDropPath)]
    assert len(sdp) == len(model.cells) and all(m.progress == 0.75 for m in sdp)
    assert sdp[-1].current_prob == pytest.approx(0.225)
