"""The mirror directory's layout and the one rule for a safe path under the web root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.errors import UnsafePathError
from mirror.layout import (
    STATE_NAME,
    WEB_DIR,
    PackagePath,
    check_relative,
    is_safe_component,
    is_temp_name,
    lock_path,
    metadata_path,
    package_path,
    state_path,
    temp_name,
    unsafe_component,
    web_root,
)


def test_the_mirror_directory_holds_the_state_the_lock_and_the_web_tree() -> None:
    directory = Path("/srv/mirror")
    assert state_path(directory) == directory / "mirror.db" == directory / STATE_NAME
    assert web_root(directory) == directory / "web" == directory / WEB_DIR
    assert lock_path(directory) == directory / ".lock"


@pytest.mark.parametrize("part", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\nb", "\x1f", "a\x7fb"])
def test_an_unsafe_component_is_refused(part: str) -> None:
    assert not is_safe_component(part)
    assert unsafe_component(["simple", part]) == part


@pytest.mark.parametrize("part", ["demo", "a..b", "...", ".well-known", "f-1.0.tar.gz", "é"])
def test_a_safe_component_is_accepted(part: str) -> None:
    assert is_safe_component(part)
    assert unsafe_component(["simple", part]) is None


def test_check_relative_splits_a_safe_path_and_refuses_an_escape() -> None:
    assert check_relative("simple/demo/index.html") == ["simple", "demo", "index.html"]
    for relative in ("/etc/passwd", "simple/../..", "simple//x", "simple/a\x7f"):
        with pytest.raises(UnsafePathError, match="unsafe path"):
            check_relative(relative)


def test_package_path_is_minted_only_for_a_safe_file_under_packages() -> None:
    path = package_path("packages/ab/cd/ef/demo-1.0.tar.gz")
    assert path == PackagePath("packages/ab/cd/ef/demo-1.0.tar.gz")
    assert metadata_path(path) == "packages/ab/cd/ef/demo-1.0.tar.gz.metadata"
    for relative in ("packages", "simple/demo/index.html", "packages/../x", "packages/a\\b"):
        with pytest.raises(UnsafePathError):
            package_path(relative)


def test_temp_names_are_recognised() -> None:
    name = temp_name("demo-1.0.tar.gz", "0123456789ab")
    assert name == ".demo-1.0.tar.gz.0123456789ab.part"
    assert is_temp_name(name)
    for other in ("demo.part", ".part", ".demo", "demo-1.0.tar.gz"):
        assert not is_temp_name(other)
