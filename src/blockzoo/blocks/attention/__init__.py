"""Channel / spatial attention and recalibration blocks (the ``attn`` slot)."""
