"""Eigen-CAM: the first principal direction of the activations, its sign, layers and overlays."""
import pytest
import torch
import torch.nn as nn

from blockzoo.analysis import eigencam
from blockzoo.analysis.eigencam import eigen_projection, plot_eigencam
from blockzoo.errors import ConfigError


def _rank_one(spatial: torch.Tensor, direction: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """Activations (1, C, H, W) = direction (C) x spatial map (H, W) (+ small noise)."""
    acts = direction.view(1, -1, 1, 1) * spatial.view(1, 1, *spatial.shape)
    return acts + noise * torch.randn(acts.shape, generator=torch.Generator().manual_seed(1))


def test_one_dominant_direction_returns_its_map():
    spatial = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 0.5], [0.0, 0.0, 6.0]])
    direction = torch.tensor([0.6, 0.0, 0.8, 0.0])          # unit norm
    cam = eigen_projection(_rank_one(spatial, direction))
    torch.testing.assert_close(cam[0], spatial)             # O V_1 = spatial * ||direction|| = spatial
    noisy = eigen_projection(_rank_one(spatial, direction, noise=1e-3))
    torch.testing.assert_close(noisy[0], spatial, atol=1e-2, rtol=0)


def test_sign_follows_the_activation_not_the_svd():
    """The map has the sign of the channel-summed activation (the SVD's sign is arbitrary): positive activations
    give the positive map, the same activations negated the negated map."""
    spatial = torch.rand(4, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    direction = torch.tensor([1.0, 2.0, 2.0]) / 3
    for sign in (1.0, -1.0):
        cam = eigen_projection(_rank_one(spatial, sign * direction))
        torch.testing.assert_close(cam[0], sign * spatial, atol=1e-5, rtol=0)


def test_centred_variant_is_the_pca_of_the_positions():
    spatial = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    direction = torch.tensor([0.0, 1.0])
    acts = _rank_one(spatial, direction) + torch.tensor([5.0, 0.0]).view(1, 2, 1, 1)  # a constant channel
    cam = eigen_projection(acts, center=True)
    torch.testing.assert_close(cam[0], spatial - spatial.mean())   # the constant channel has no variance


def test_eigencam_of_a_model_layer(tmp_path):
    from blockzoo import create_model
    model = create_model("resnet20", num_classes=10, in_chans=1)
    x = torch.randn(3, 1, 28, 28)
    layer, maps = eigencam(model, x)
    assert layer == model.feature_info[-1]["module"] and maps.shape == (3, 7, 7)
    _, maps1 = eigencam(model, x, layer="layers.0")
    assert maps1.shape == (3, 28, 28)
    with pytest.raises(ConfigError, match="layers.0"):
        eigencam(model, x, layer="layers.9")
    assert plot_eigencam(x.sigmoid(), maps, tmp_path / "cam.png").read_bytes()[:4] == b"\x89PNG"


def test_eigencam_needs_feature_maps():
    with pytest.raises(ConfigError):
        eigen_projection(torch.randn(2, 3))
    with pytest.raises(ConfigError, match="NCHW"):
        eigencam(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(1, 1, 2, 2), layer="1")
