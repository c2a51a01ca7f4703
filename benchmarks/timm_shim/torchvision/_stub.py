"""Placeholder classes for the torchvision names timm only imports (used only in timm's data pipeline)."""


def stub(module: str, name: str) -> type:
    """A class named ``name`` whose construction raises: the benchmark never uses timm's data pipeline."""
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{module}.{name} is a placeholder of blockzoo's benchmark torchvision shim")
    return type(name, (), {"__init__": __init__, "__module__": module})
