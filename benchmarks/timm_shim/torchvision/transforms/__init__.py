"""Placeholder ``torchvision.transforms``: every class name resolves to a stub that raises when constructed."""
from torchvision._stub import stub


def __getattr__(name: str):
    if name[:1].isupper():
        return stub(__name__, name)
    raise AttributeError(name)
