"""Block families: one file per paper or family under ``blocks/<family>/``. Every public submodule is imported (and so
registers its blocks) when the registry is first used; files whose name starts with ``_`` are skipped."""
from blockzoo._autoimport import import_submodules

import_submodules(__name__)
