"""The house layout (DEVELOPERS.md): models import blocks and the shared skeletons, never another family file;
blocks never import models; every registered model name is written literally at its register_model call."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from blockzoo.registry import list_models

SRC = Path(__file__).resolve().parents[2] / "src" / "blockzoo"
# models-level modules that are infrastructure, not families (they register nothing)
SHARED_MODELS = {"blockzoo.models", "blockzoo.models.base", "blockzoo.models.metaformer"}


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def _is_shared(mod: str) -> bool:
    return mod in SHARED_MODELS or mod.startswith("blockzoo.models.common")


@pytest.mark.parametrize("path", sorted((SRC / "models").glob("*.py")), ids=lambda p: p.name)
def test_family_files_import_no_other_family(path):
    families = {m for m in _imports(path) if m.startswith("blockzoo.models") and not _is_shared(m)}
    assert not families, f"{path.name} imports family file(s) {sorted(families)}; move the shared part to " \
                         f"blockzoo/blocks/common/ or blockzoo/models/common/"


@pytest.mark.parametrize("path", sorted((SRC / "models" / "common").glob("*.py")) + [SRC / "models" / "base.py",
                                                                                   SRC / "models" / "metaformer.py"],
                         ids=lambda p: p.name)
def test_shared_model_modules_register_nothing(path):
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and getattr(n.func, "id", getattr(n.func, "attr", None)) == "register_model"]
    assert not calls, f"{path.name} is a shared skeleton: register its configurations in a family file"


def test_blocks_never_import_models():
    offenders = {str(p.relative_to(SRC)): sorted(m for m in _imports(p) if m.startswith("blockzoo.models"))
                 for p in (SRC / "blocks").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_model_names_are_literal():
    """``grep -rn '"seresnet50"' src/`` finds the definition: each name is a literal register_model argument."""
    text = "\n".join(p.read_text() for p in (SRC / "models").rglob("*.py"))
    missing = [n for n in list_models() if not re.search(r'register_model\(\s*"' + re.escape(n) + '"', text)]
    assert not missing, f"registered without a literal name: {missing}"
