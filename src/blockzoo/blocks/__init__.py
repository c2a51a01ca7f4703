"""Block families. Importing this package registers every block (the registry does it lazily on first use)."""
from blockzoo.blocks.common import layers  # noqa: F401
from blockzoo.blocks import attention  # noqa: F401
