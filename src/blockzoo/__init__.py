"""blockzoo: faithful, tested, swappable building blocks of deep networks from the papers, and the bench to
measure them.

    >>> import blockzoo
    >>> model = blockzoo.create_model("resnet20", num_classes=10, in_chans=1, attn="eca")
    >>> report = blockzoo.profile(model, (1, 28, 28))
"""
from blockzoo.errors import (  # noqa: F401
    BlockzooError, CheckpointError, ConfigError, DataError, IncompatibleBlockError, InputShapeError, UnknownNameError,
)
from blockzoo.registry import (  # noqa: F401
    create_block, create_model, get_info, list_blocks,
    list_models, list_slots,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `blockzoo.profile(...)` without importing the profiler (and its torch.utils imports) at package import.
    if name == "profile":
        from blockzoo.profile import profile
        return profile
    raise AttributeError(f"module 'blockzoo' has no attribute {name!r}")
