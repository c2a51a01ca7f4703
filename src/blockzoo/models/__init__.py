"""Backbone families. Importing this package registers every model (the registry does it lazily on first use)."""
from blockzoo.models import resnet, wrn  # noqa: F401
