"""Import every submodule of a package so that its ``@register_block`` / ``@register_model`` decorators run."""
from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str) -> None:
    pkg = importlib.import_module(package_name)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package_name + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)
