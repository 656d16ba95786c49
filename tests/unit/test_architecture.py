"""The shape of the package (DESIGN.md, docs/ARCHITECTURE.md): the layer contracts hold,
modules and functions stay small enough to read, and every module says what it owns."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bucketchat"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: layers, no cycles, one importer per
    library."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert tool is not None, "import-linter is missing: make dev installs it"
    result = subprocess.run(
        [tool, "--no-cache"], capture_output=True, text=True, cwd=PACKAGE.parent, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_is_small_and_says_what_it_owns(path: Path) -> None:
    source = path.read_text("utf-8")
    assert source.count("\n") <= MAX_MODULE_LINES
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree)
    assert docstring and docstring.strip(), f"{path.name} has no docstring saying what it owns"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_only_the_cache_touches_the_raw_connection() -> None:
    outside = [
        path.relative_to(PACKAGE)
        for path in MODULES
        if path.parent.name != "cache" and "._con" in path.read_text("utf-8")
    ]
    assert not outside
