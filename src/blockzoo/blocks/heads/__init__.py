"""heads blocks."""
