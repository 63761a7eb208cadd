"""The dependency closure from Requires-Dist, fed by hand (no I/O)."""

from __future__ import annotations

import pytest
from packaging.utils import NormalizedName

from mirror.closure import ClosureWalk, changed

LINUX_312 = [{"python_version": "3.12", "sys_platform": "linux", "platform_system": "Linux",
              "os_name": "posix", "implementation_name": "cpython",
              "platform_python_implementation": "CPython", "python_full_version": "3.12.0",
              "implementation_version": "3.12.0", "platform_machine": "x86_64",
              "platform_release": "", "platform_version": ""}]  # fmt: skip


def metadata(*requires: str) -> bytes:
    lines = ["Metadata-Version: 2.1", "Name: x", "Version: 1"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n\n").encode()


def walk(
    roots: list[str], files: dict[str, list[bytes]]
) -> tuple[dict[NormalizedName, tuple[str, ...]], list[str]]:
    """Run the walk the way the sync does; return the needs and the read order."""
    closure = ClosureWalk(map(NormalizedName, roots), LINUX_312)
    read: list[str] = []
    while (name := closure.next_project()) is not None:
        read.append(name)
        for body in files.get(name, []):
            closure.read(body)
    return closure.needs(), read


@pytest.mark.parametrize(
    ("roots", "files", "needs"),
    [
        (["app"], {}, {}),
        (["app"], {"app": [metadata("lib>=2")]}, {"lib": (">=2",)}),
        (
            ["app"],
            {"app": [metadata("lib>=2"), metadata("lib<4")], "lib": [metadata("Deep")]},
            {"lib": ("<4", ">=2"), "deep": ("",)},
        ),
        (
            ["app"],
            {"app": [metadata("lib>=2", "lib")]},
            {"lib": ("",)},
        ),
        (
            ["app"],
            {"app": [metadata('win ; sys_platform == "win32"', 'test ; extra == "test"')]},
            {},
        ),
        (
            ["a", "b"],
            {"a": [metadata("b")], "b": [metadata("a")]},
            {"a": ("",), "b": ("",)},
        ),
        (["app"], {"app": [metadata("not a requirement !!", "ok")]}, {"ok": ("",)}),
    ],
    ids=["nothing", "one", "transitive", "empty absorbs", "markers", "cycle", "bad line"],
)
def test_closure_needs(
    roots: list[str], files: dict[str, list[bytes]], needs: dict[str, tuple[str, ...]]
) -> None:
    found, read = walk(roots, files)
    assert found == needs
    assert len(read) == len(set(read)), "each project is read once"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({}, {}, []),
        ({"a": ("",)}, {"a": ("",)}, []),
        ({"a": ("",)}, {"a": (">=1",), "b": ("",)}, ["a", "b"]),
        ({"c": ("",), "a": ("",)}, {}, ["a", "c"]),
    ],
)
def test_changed_names_what_differs(
    old: dict[NormalizedName, tuple[str, ...]],
    new: dict[NormalizedName, tuple[str, ...]],
    expected: list[str],
) -> None:
    assert changed(old, new) == expected
