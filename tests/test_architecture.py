"""The shape of the code: the rules docs/architecture.md states, checked on the source.

Everything here reads the source with :mod:`ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mirror"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

PURE_MODULES = (
    "mirror.plan",
    "mirror.changes",
    "mirror.rootdiff",
    "mirror.closure",
    "mirror.simple",
    "mirror.models",
    "mirror.bandersnatchconf",
    "mirror.bandersnatchstate",
)
FORBIDDEN_IN_PURE = ("aiohttp", "asyncio", "sqlite3", "mirror.storage")
MAX_CLASS_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def production_modules() -> dict[str, Path]:
    """The package without ``mirror.testing`` (the fake upstream and the soak)."""
    return {
        name: path
        for name, path in modules().items()
        if name != "mirror.testing" and not name.startswith("mirror.testing.")
    }


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"))


@cache
def imports(name: str) -> frozenset[str]:
    """The modules ``name`` imports, anywhere in it (a function-level import counts:
    it runs all the same). ``from mirror import x`` counts as ``mirror.x`` when that
    is a module."""
    found: set[str] = set()
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules():
                    found.add(f"{base}.{alias.name}")
    return frozenset(found)


def own_modules(name: str) -> set[str]:
    """The mirror modules ``name`` imports, with the packages they sit in (importing
    ``mirror.a.b`` runs ``mirror.a/__init__.py``)."""
    result: set[str] = set()
    for imported in imports(name):
        parts = imported.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules() and prefix != "mirror":
                result.add(prefix)
    return result


def reachable(name: str) -> set[str]:
    """``name`` and every mirror module it imports, transitively."""
    seen = {name}
    frontier = [name]
    while frontier:
        for imported in own_modules(frontier.pop()):
            if imported not in seen:
                seen.add(imported)
                frontier.append(imported)
    return seen


def is_forbidden(imported: str) -> bool:
    return any(imported == f or imported.startswith(f"{f}.") for f in FORBIDDEN_IN_PURE)


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_modules_do_no_io_even_through_what_they_import(name: str) -> None:
    offenders = sorted(
        f"{module} imports {imported}"
        for module in reachable(name)
        for imported in imports(module) | own_modules(module)
        if is_forbidden(imported)
    )
    assert offenders == []


def test_no_class_outside_mirror_testing_is_longer_than_400_lines() -> None:
    long = sorted(
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name in production_modules()
        for node in ast.walk(tree(name))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    )
    assert long == []


def test_no_global_statement_in_mirror() -> None:
    found = sorted(
        f"{name}:{node.lineno}"
        for name in modules()
        for node in ast.walk(tree(name))
        if isinstance(node, ast.Global)
    )
    assert found == []


def modules_with_constant(matches: re.Pattern[str]) -> list[str]:
    return sorted(
        name
        for name in production_modules()
        if any(
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and matches.search(node.value)
            for node in ast.walk(tree(name))
        )
    )


def test_the_state_file_name_is_spelled_in_one_module() -> None:
    assert modules_with_constant(re.compile(r"^mirror\.db$")) == ["mirror.layout"]


def test_the_unsafe_path_rule_is_defined_in_one_module() -> None:
    # The character class of an unsafe path component: controls, DEL, separators.
    assert modules_with_constant(re.compile(re.escape(r"\x00-\x1f"))) == ["mirror.layout"]


def layering() -> list[list[str]]:
    """The layers of docs/architecture.md's "Layering" section, lowest first: each
    line ``N. `mirror.a`, `mirror.b` ...`` is one layer."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Layering\n", 1)[1].split("\n## ", 1)[0]
    layers = [
        re.findall(r"`(mirror(?:\.\w+)*)`", line)
        for line in section.splitlines()
        if re.match(r"\d+\. ", line)
    ]
    return [layer for layer in layers if layer]


def layer_of(name: str, layers: list[list[str]]) -> int | None:
    """The layer of ``name``: its own entry, else that of the closest package named."""
    parts = name.split(".")
    # The package root only by its own entry: it must not stand in for the others.
    for end in range(len(parts), 1 if len(parts) > 1 else 0, -1):
        prefix = ".".join(parts[:end])
        for index, layer in enumerate(layers):
            if prefix in layer:
                return index
    return None


def test_every_module_has_a_layer() -> None:
    layers = layering()
    assert [name for name in production_modules() if layer_of(name, layers) is None] == []


def test_every_module_has_a_row_in_the_modules_table() -> None:
    """A newcomer reads the tree from docs/architecture.md: each module file, or the
    package it belongs to (``mirror/state/``, ``mirror/filters/``), has a row."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        name
        for row in re.findall(r"^\| (`[^|]+`) \|", section, flags=re.MULTILINE)
        for name in re.findall(r"`([^`]+)`", row)
    }
    root = ARCHITECTURE.parent.parent
    unlisted = []
    for path in production_modules().values():
        relative = path.relative_to(root).as_posix()
        packages = {f"{parent.as_posix()}/" for parent in path.relative_to(root).parents}
        if relative not in rows and not packages & rows:
            unlisted.append(relative)
    assert sorted(unlisted) == []


def test_no_module_imports_one_drawn_above_it() -> None:
    layers = layering()
    upward = []
    for name in production_modules():
        own = layer_of(name, layers)
        assert own is not None
        for imported in own_modules(name):
            theirs = layer_of(imported, layers)
            if theirs is not None and theirs > own:
                upward.append(f"{name} (layer {own + 1}) imports {imported} (layer {theirs + 1})")
    assert sorted(upward) == []


def test_the_checks_see_what_they_check() -> None:
    """The helpers above find imports, including relative and function-level ones."""
    assert "mirror.plan" in own_modules("mirror.fetch")
    assert "mirror.metrics" in own_modules("mirror.sync")  # imported inside a function
    assert "asyncio" in imports("mirror.sync")
    assert "mirror.storage" in reachable("mirror.sync")
