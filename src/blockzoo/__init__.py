"""blockzoo: faithful, tested, swappable building blocks of deep networks from the papers, and the bench to
measure them.

    >>> import blockzoo
    >>> model = blockzoo.create_model("resnet20", num_classes=10, in_chans=1, attn="eca")
    >>> report = blockzoo.profile_model(model, (1, 28, 28))

``blockzoo.profile`` is the profiler package (``count_macs``, ``format_report``, ...); ``blockzoo.profile_model``
and ``blockzoo.load_model`` are imported on first use, so ``import blockzoo`` stays light.
"""
from blockzoo.errors import (  # noqa: F401
    BlockzooError,
    CheckpointError,
    ConfigError,
    DataError,
    IncompatibleBlockError,
    InputShapeError,
    UnknownNameError,
)
from blockzoo.registry import (  # noqa: F401
    create_block,
    create_model,
    get_info,
    list_blocks,
    list_models,
    list_slots,
)

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ (PEP 562)
_LAZY = {"profile_model": "blockzoo.profile", "load_model": "blockzoo.train.checkpoint"}


def __getattr__(name: str):
    import importlib
    if name == "profile":  # the subpackage (Python binds it here once anything imported it)
        return importlib.import_module("blockzoo.profile")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'blockzoo' has no attribute {name!r}")
