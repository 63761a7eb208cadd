"""Lockfile seeds: ``[allowlist] lockfiles`` mirrors exactly the files a ``pylock.toml``
and a ``uv.lock`` lock, and reports the locked files upstream no longer has."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.cli import summary_line
from mirror.errors import ConfigError
from mirror.filters import FilterSet, load_filters
from mirror.filters.lockfiles import LockedFile, merge_locks, parse_lockfile
from mirror.status import read_status, render_status, status_json
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_consistent, files_on_disk, published_files

ALPHA = NormalizedName("alpha")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Published:
    """What the test uploaded to the fake upstream: ``{filename: sha256}``."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.hashes: dict[str, str] = {}

    def release(self, name: str, version: str) -> tuple[str, str]:
        """An sdist and a wheel of ``name`` ``version``; their filenames."""
        sdist, sdist_bytes = make_sdist(name, version)
        wheel, wheel_bytes, metadata = make_wheel(name, version)
        self.upstream.add_file(name, version, sdist, sdist_bytes)
        self.upstream.add_file(name, version, wheel, wheel_bytes, metadata=metadata)
        self.hashes[sdist] = sha(sdist_bytes)
        self.hashes[wheel] = sha(wheel_bytes)
        return sdist, wheel


def pylock_text(*packages: tuple[str, str, dict[str, str]]) -> str:
    """A PEP 751 lock of ``(name, version, {filename: sha256})`` (the first file of a
    ``.tar.gz`` name is the sdist)."""
    lines = ['lock-version = "1.0"', 'created-by = "test"', ""]
    for name, version, files in packages:
        lines += ["[[packages]]", f'name = "{name}"', f'version = "{version}"', ""]
        for filename, digest in files.items():
            if filename.endswith(".tar.gz"):
                lines += [
                    "[packages.sdist]",
                    f'name = "{filename}"',
                    f'url = "https://files.example/{filename}"',
                    f'hashes = {{sha256 = "{digest}"}}',
                    "",
                ]
            else:
                lines += [
                    "[[packages.wheels]]",
                    f'url = "https://files.example/packages/{filename}"',
                    f'hashes = {{sha256 = "{digest}"}}',
                    "",
                ]
    return "\n".join(lines)


def uv_lock_text(*packages: tuple[str, str, dict[str, str]]) -> str:
    """A ``uv.lock`` of ``(name, version, {filename: sha256})``, with the project
    itself (a virtual source) first, as uv writes it."""
    lines = [
        "version = 1",
        'requires-python = ">=3.11"',
        "",
        "[[package]]",
        'name = "app"',
        'version = "0.1.0"',
        'source = { virtual = "." }',
        "",
    ]
    for name, version, files in packages:
        lines += [
            "[[package]]",
            f'name = "{name}"',
            f'version = "{version}"',
            'source = { registry = "https://pypi.example/simple" }',
        ]
        wheels = []
        for filename, digest in files.items():
            url = f"https://files.example/{filename}"
            entry = f'{{ url = "{url}", hash = "sha256:{digest}", size = 1 }}'
            if filename.endswith(".tar.gz"):
                lines.append(f"sdist = {entry}")
            else:
                wheels.append(entry)
        if wheels:
            lines += ["wheels = [", *(f"    {w}," for w in wheels), "]"]
        lines.append("")
    return "\n".join(lines)


def lock_filters(base: Path, lockfiles: str, **extra: str) -> FilterSet:
    allowlist = {"lockfiles": lockfiles, **extra}
    return load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": allowlist}, base=base)


# --- parsing -----------------------------------------------------------------------


def test_a_pylock_toml_gives_its_index_files_by_project_and_release() -> None:
    text = pylock_text(
        ("Alpha", "2.0", {"alpha-2.0.tar.gz": "a" * 64, "alpha-2.0-py3-none-any.whl": "B" * 64})
    )
    text += '\n[[packages]]\nname = "local"\ndirectory = { path = "." }\n'
    locked = parse_lockfile(text).files
    assert locked == (
        LockedFile(name=ALPHA, version="2.0", filename="alpha-2.0.tar.gz", sha256="a" * 64),
        LockedFile(
            name=ALPHA, version="2.0", filename="alpha-2.0-py3-none-any.whl", sha256="b" * 64
        ),
    )


def test_a_uv_lock_gives_its_registry_files_and_skips_the_project_itself() -> None:
    text = uv_lock_text(
        ("beta", "0.1", {"beta-0.1.tar.gz": "c" * 64, "beta-0.1-py3-none-any.whl": "d" * 64})
    )
    text += '\n[[package]]\nname = "checkout"\nversion = "1"\nsource = { git = "https://x" }\n'
    locked = parse_lockfile(text).files
    assert [(f.name, f.version, f.filename, f.sha256) for f in locked] == [
        ("beta", "0.1", "beta-0.1.tar.gz", "c" * 64),
        ("beta", "0.1", "beta-0.1-py3-none-any.whl", "d" * 64),
    ]


def test_merged_locks_are_sorted_and_without_repeats() -> None:
    one = parse_lockfile(
        pylock_text(("b", "1", {"b-1.tar.gz": "1" * 64}), ("a", "1", {"a-1.tar.gz": "2" * 64}))
    )
    two = parse_lockfile(uv_lock_text(("b", "1", {"b-1.tar.gz": "1" * 64})))
    merged = merge_locks([one, two])
    assert [name for name, _ in merged] == ["a", "b"]
    assert [len(files) for _, files in merged] == [1, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not [toml", "not a TOML file"),
        ("x = 1", "neither a pylock.toml"),
        ('lock-version = "2.0"\npackages = []', "lock-version: unsupported version"),
        ('lock-version = "1.0"\npackages = 3', "packages: expected an array of tables"),
        (
            'lock-version = "1.0"\n[[packages]]\nversion = "1"',
            "packages[0].name: expected a string",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "a"\nversion = "1"\nsdist = 1',
            "packages[0].sdist: expected a table",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "a"\nversion = "1"\n'
            '[[packages.wheels]]\nurl = "https://x/a.whl"\nhashes = {sha256 = "zz"}',
            "packages[0].wheels[0].hashes.sha256: expected a sha256 hex digest",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "a"\nversion = "1"\n'
            '[[packages.wheels]]\nurl = "https://x/a.whl"',
            "packages[0].wheels[0].hashes: expected a table",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "a"\nversion = "1"\n'
            f'[[packages.wheels]]\nname = 3\nhashes = {{sha256 = "{"a" * 64}"}}',
            "packages[0].wheels[0].name: expected a file name",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "a"\nversion = "1"\n'
            f'[[packages.wheels]]\nurl = "https://x/"\nhashes = {{sha256 = "{"a" * 64}"}}',
            "packages[0].wheels[0].url: no file name",
        ),
        ('version = 1\n[[package]]\nname = "a"\nsource = 1', "package[0].source: expected a table"),
        (
            'version = 1\n[[package]]\nname = "a"\nversion = "1"\nsdist = 2',
            "package[0].sdist: expected a table",
        ),
        (
            'version = 1\n[[package]]\nname = "a"\nversion = "1"\n'
            'sdist = { url = "https://x/a-1.tar.gz", hash = "md5:00" }',
            "package[0].sdist.hash: expected sha256:<hex>",
        ),
    ],
)
def test_a_bad_lockfile_is_refused_naming_the_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_lockfile(text)


def test_the_allowlist_names_the_lockfile_it_cannot_use(tmp_path: Path) -> None:
    (tmp_path / "pylock.toml").write_text("x = 1")
    with pytest.raises(ConfigError, match=r"\[allowlist\] lockfiles: .*pylock.toml: neither"):
        lock_filters(tmp_path, "pylock.toml")
    with pytest.raises(ConfigError, match=r"\[allowlist\] lockfiles: no file matches"):
        lock_filters(tmp_path, "locks/*.toml")
    with pytest.raises(ConfigError, match=r"\[allowlist\] lockfiles: cannot read"):
        lock_filters(tmp_path, "missing.lock")


# --- mirrors seeded from lockfiles ---------------------------------------------------


async def test_a_mirror_seeded_from_a_pylock_and_a_uv_lock_holds_exactly_their_files(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published = Published(upstream)
    published.release("alpha", "1.0")
    _, alpha_wheel = published.release("alpha", "2.0")
    beta_sdist, beta_wheel = published.release("beta", "0.1")
    published.release("beta", "0.2")
    published.release("gamma", "1.0")
    gone = "alpha-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "pylock.toml").write_text(
        pylock_text(("alpha", "2.0", {alpha_wheel: published.hashes[alpha_wheel], gone: "e" * 64}))
    )
    (locks / "uv.lock").write_text(
        uv_lock_text(
            (
                "beta",
                "0.1",
                {
                    beta_sdist: published.hashes[beta_sdist],
                    beta_wheel: published.hashes[beta_wheel],
                },
            )
        )
    )
    runner.options = replace(
        runner.options, filters=lock_filters(tmp_path, "locks/pylock.toml locks/*.lock")
    )
    with caplog.at_level(logging.WARNING, logger="mirror.project"):
        report = await runner.sync()
    assert report.ok
    assert set(published_files(runner.web, "alpha")) == {alpha_wheel}
    assert set(published_files(runner.web, "beta")) == {beta_sdist, beta_wheel}
    assert {f: p.sha256 for f, p in published_files(runner.web, "alpha").items()} == {
        alpha_wheel: published.hashes[alpha_wheel]
    }
    page = json.loads((runner.web / "simple" / "beta" / "index.v1_json").read_bytes())
    assert page["versions"] == ["0.1"]
    assert not (runner.web / "simple" / "gamma").exists()
    assert set(files_on_disk(runner.directory)) == {
        alpha_wheel,
        f"{alpha_wheel}.metadata",
        beta_sdist,
        beta_wheel,
        f"{beta_wheel}.metadata",
    }
    assert_consistent(runner.directory)
    missing = LockedFile(name=ALPHA, version="2.0", filename=gone, sha256="e" * 64)
    assert report.missing_locked == (missing,)
    assert summary_line(report).endswith("; 1 locked file(s) upstream no longer has")
    assert f"locked file no longer upstream: {missing}" in caplog.text
    with runner.state() as state:
        status = read_status(state, now=runner.clock())
    assert status.missing_locked == (missing,)
    assert f"  {missing}" in render_status(status)
    assert json.loads(status_json(status))["missing_locked"] == [
        {"name": "alpha", "version": "2.0", "filename": gone, "sha256": "e" * 64}
    ]


async def test_a_locked_file_removed_upstream_is_reported_and_cleared_once_relocked(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    published = Published(upstream)
    sdist, wheel = published.release("alpha", "1.0")
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        pylock_text(
            ("alpha", "1.0", {sdist: published.hashes[sdist], wheel: published.hashes[wheel]})
        )
    )
    runner.options = replace(runner.options, filters=lock_filters(tmp_path, "pylock.toml"))
    assert (await runner.sync()).missing_locked == ()
    upstream.remove_file("alpha", wheel)
    report = await runner.sync()
    assert [f.filename for f in report.missing_locked] == [wheel]
    assert set(published_files(runner.web, "alpha")) == {sdist}
    with runner.state() as state:
        assert [f.filename for f in state.missing_locked()] == [wheel]
    # The lock no longer names the wheel: nothing is missing.
    lock.write_text(pylock_text(("alpha", "1.0", {sdist: published.hashes[sdist]})))
    runner.options = replace(runner.options, filters=lock_filters(tmp_path, "pylock.toml"))
    assert (await runner.sync()).missing_locked == ()
    with runner.state() as state:
        assert state.missing_locked() == []


async def test_a_locked_project_gone_upstream_reports_every_locked_file(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    published = Published(upstream)
    sdist, _ = published.release("alpha", "1.0")
    (tmp_path / "uv.lock").write_text(
        uv_lock_text(
            ("alpha", "1.0", {sdist: published.hashes[sdist]}),
            ("ghost", "1.0", {"ghost-1.0.tar.gz": "f" * 64}),
        )
    )
    runner.options = replace(runner.options, filters=lock_filters(tmp_path, "uv.lock"))
    report = await runner.sync()
    assert [(f.name, f.filename) for f in report.missing_locked] == [("ghost", "ghost-1.0.tar.gz")]
    assert set(published_files(runner.web, "alpha")) == {sdist}


async def test_a_project_both_listed_and_locked_keeps_the_listed_releases_whole(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    published = Published(upstream)
    old_sdist, old_wheel = published.release("alpha", "1.0")
    new_sdist, new_wheel = published.release("alpha", "2.0")
    published.release("alpha", "3.0")
    (tmp_path / "pylock.toml").write_text(
        pylock_text(("alpha", "1.0", {old_wheel: published.hashes[old_wheel]}))
    )
    runner.options = replace(
        runner.options, filters=lock_filters(tmp_path, "pylock.toml", packages="alpha==2.0")
    )
    assert (await runner.sync()).ok
    assert set(published_files(runner.web, "alpha")) == {old_wheel, new_sdist, new_wheel}
    assert old_sdist not in files_on_disk(runner.directory)
    # A locked release a specifier admits too is kept whole.
    runner.options = replace(
        runner.options, filters=lock_filters(tmp_path, "pylock.toml", packages="alpha<=2")
    )
    assert (await runner.sync()).ok
    assert set(published_files(runner.web, "alpha")) == {old_sdist, old_wheel, new_sdist, new_wheel}


def test_a_uv_lock_package_may_have_wheels_only() -> None:
    locked = parse_lockfile(uv_lock_text(("a", "1", {"a-1-py3-none-any.whl": "1" * 64}))).files
    assert [f.filename for f in locked] == ["a-1-py3-none-any.whl"]
