"""The repository layout and the one direction of dependency: crypto <- sync <- {server, clients}.

The import-linter contracts in pyproject.toml say the same; this test keeps it true even
where only pytest runs.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Our top-level packages. crypto, sync and clients are also names of unrelated PyPI projects,
# so check that the import resolves to this repository and not to site-packages.
PACKAGES = ["crypto", "sync", "server", "clients", "migrations"]

_FRAMEWORKS = {"fastapi", "starlette", "uvicorn", "sqlmodel", "sqlalchemy", "httpx", "httpx2"}
FORBIDDEN_IMPORTS = {
    "crypto": {"sync", "server", "clients"} | _FRAMEWORKS,
    "sync": {"server", "clients"} | _FRAMEWORKS,
}
# Configuration is read once, in server/settings.py; the core takes what it needs as arguments.
FORBIDDEN_TEXT = ("os.environ", "os.getenv")


@pytest.mark.parametrize("name", PACKAGES)
def test_generic_package_names_resolve_inside_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None, f"{name} is a namespace package; add an __init__.py"
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__


def _imported_top_levels(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_import_direction(package: str) -> None:
    sources = _sources(package)
    assert sources, f"{package}/ has no Python files"
    problems = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        imported = _imported_top_levels(ast.parse(text, filename=str(path)))
        forbidden = sorted(imported & FORBIDDEN_IMPORTS[package])
        problems += [f"{rel} imports {name}" for name in forbidden]
        problems += [f"{rel} uses {needle}" for needle in FORBIDDEN_TEXT if needle in text]
    assert not problems, "\n".join(problems)


MAX_MODULE_LINES = 400
"""STYLE habit 9: small modules; the client core and the clients stay under this."""


@pytest.mark.parametrize("package", ["sync", "clients"])
def test_no_module_of_the_client_layer_is_over_400_lines(package: str) -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _sources(package)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these modules:\n" + "\n".join(long)


def test_the_client_core_replaces_the_old_engine() -> None:
    """Issue 11: one client core, `sync/client/`; `sync/engine.py` is gone for good."""
    assert not (ROOT / "sync" / "engine.py").exists()
    assert (ROOT / "sync" / "client" / "session.py").exists()


def _test_module_name(path: Path) -> str:
    """The module name pytest's rootdir-relative import gives a test file: its basename,
    prefixed by the names of the enclosing directories that are packages."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_test_modules_have_unique_import_names() -> None:
    """Two test files with one import name make pytest refuse to collect the whole suite
    ('import file mismatch'), which a run of one directory never shows."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(_test_module_name(path), []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
