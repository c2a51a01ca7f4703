"""mixers blocks."""
