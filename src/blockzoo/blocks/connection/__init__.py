"""connection blocks: how a residual branch is merged with its shortcut."""
