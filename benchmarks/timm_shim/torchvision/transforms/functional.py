"""Placeholder ``torchvision.transforms.functional``: the real ``InterpolationMode`` enum, stubs for the rest."""
from enum import Enum


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def __getattr__(name: str):
    if name.startswith("_"):
        raise AttributeError(name)

    def placeholder(*args, **kwargs):
        raise NotImplementedError(f"{__name__}.{name} is a placeholder of blockzoo's benchmark torchvision shim")
    return placeholder
