"""Every registered claim names where it is checked, and that place exists (a test function or a benchmark file)."""
import ast
from functools import cache
from pathlib import Path

import pytest

from blockzoo import registry as R

ROOT = Path(__file__).resolve().parents[1]
STATUSES = ("tested", "measured", "not checked")


def _claims():
    for name in R.list_blocks() + R.list_models():
        spec = R.get_block_spec(name) if R.is_block(name) else R.get_model_spec(name)
        for claim in spec.claims:
            yield name, claim


@cache
def _defined(path: Path) -> frozenset[str]:
    """Qualified names of the functions and classes defined in a test file (``test_x``, ``TestY::test_z``)."""
    names: set[str] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + child.name)
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}::")

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return frozenset(names)


def test_there_are_claims():
    assert sum(1 for _ in _claims()) > 100


@pytest.mark.parametrize("name,claim", list(_claims()), ids=lambda v: v if isinstance(v, str) else "")
def test_claim_check_exists(name, claim):
    assert claim.status in STATUSES, f"{name}: claim status {claim.status!r} is not one of {STATUSES}"
    if claim.check is None:
        assert claim.status == "not checked", f"{name}: a {claim.status!r} claim must name its check: {claim.text}"
        return
    path, _, func = claim.check.partition("::")
    file = ROOT / path
    assert file.is_file(), f"{name}: claim check {claim.check!r} names a file that does not exist"
    if path.startswith("tests/"):
        assert func, f"{name}: claim check {claim.check!r} should name the test function (file::test_name)"
        assert func.split("[")[0] in _defined(file), f"{name}: {claim.check!r}: no such test in {path}"
    else:
        assert path.startswith("benchmarks/") and claim.status == "measured", (
            f"{name}: {claim.check!r}: a check outside tests/ must be a benchmark under benchmarks/ with status "
            f"'measured'")
