"""norm blocks."""
