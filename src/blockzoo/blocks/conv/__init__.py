"""conv blocks."""
