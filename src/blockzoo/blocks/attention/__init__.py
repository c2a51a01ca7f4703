"""Channel / spatial attention and recalibration blocks (the ``attn`` slot)."""
from blockzoo.blocks.attention import coord, eca, scse, se  # noqa: F401  (registration)
