"""blockzoo.data.synthetic: the synthetic set is deterministic and learnable."""
from __future__ import annotations

import numpy as np
import torch

from blockzoo.data import (
    load_dataset,
)


def test_synthetic_deterministic_and_learnable():
    a = load_dataset("synthetic", "train", n=400, num_classes=4, image_size=16, channels=2)
    b = load_dataset("synthetic", "train", n=400, num_classes=4, image_size=16, channels=2)
    t = load_dataset("synthetic", "test", n=200, num_classes=4, image_size=16, channels=2)
    assert a.images.shape == (400, 2, 16, 16) and a.num_classes == 4 and a.in_chans == 2
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.class_counts().tolist() == [100, 100, 100, 100]
    assert not torch.equal(a.images[:200], t.images)
    assert a.mean == t.mean and len(a.mean) == 2                           # test uses the train statistics
    xf = a.images.double() / 255
    assert np.allclose(a.mean, xf.mean(dim=(0, 2, 3)).tolist(), atol=0.01)
    assert np.allclose(a.std, xf.std(dim=(0, 2, 3)).tolist(), atol=0.01)
    other = load_dataset("synthetic", n=400, num_classes=4, image_size=16, channels=2, pattern_seed=1)
    assert not torch.equal(a.images, other.images)
    # learnable: nearest class mean (fit on train) classifies the test split well
    centroids = torch.stack([xf[a.labels == k].mean(0).flatten() for k in range(4)])
    xt = (t.images.double() / 255).flatten(1)
    pred = torch.cdist(xt, centroids).argmin(1)
    assert (pred == t.labels).double().mean() > 0.9
