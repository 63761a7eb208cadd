"""The composition root: a config becomes a locked, running sync over the fake upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror import app
from mirror.config import load_config
from mirror.errors import ConfigError, LockedError
from mirror.lock import mirror_lock
from mirror.testing import FakeUpstream
from tests.harness import write_config
from tests.mirrorcheck import assert_consistent


@pytest.fixture
def seeded(upstream: FakeUpstream) -> FakeUpstream:
    for name in ("alpha", "beta", "gamma"):
        upstream.add_release(name, "1.0")
    return upstream


def requirements_config(tmp_path: Path, upstream: FakeUpstream, wanted: str) -> Path:
    (tmp_path / "requirements.txt").write_text(wanted + "\n")
    path = write_config(tmp_path, upstream.base_url)
    with path.open("a") as file:
        file.write(
            "[plugins]\nenabled = project_requirements\n"
            "[allowlist]\nrequirements_path = .\nrequirements = requirements.txt\n"
        )
    return path


def mirrored(directory: Path) -> set[str]:
    simple = directory / "web" / "simple"
    return {entry.name for entry in simple.iterdir() if entry.is_dir()}


async def test_a_sync_creates_the_directory_and_mirrors_what_the_filters_keep(
    seeded: FakeUpstream, tmp_path: Path
) -> None:
    config = load_config(requirements_config(tmp_path, seeded, "alpha"))
    assert not config.directory.exists()
    report = await app.sync(config)
    assert report.ok
    assert mirrored(config.directory) == {"alpha"}
    assert_consistent(config.directory)


async def test_the_config_s_filters_are_the_ones_parsed_unless_asked_to_reread(
    seeded: FakeUpstream, tmp_path: Path
) -> None:
    config = load_config(requirements_config(tmp_path, seeded, "alpha"))
    (tmp_path / "requirements.txt").write_text("beta\n")
    await app.sync(config)
    assert mirrored(config.directory) == {"alpha"}, "parsed once"
    await app.sync(config, reread_filters=True)
    assert mirrored(config.directory) == {"beta"}, "a daemon pass reads the file as it is now"


async def test_a_sync_holds_the_lock_and_names_the_directory_it_cannot_create(
    seeded: FakeUpstream, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, seeded.base_url))
    config.directory.mkdir()
    with mirror_lock(config.directory), pytest.raises(LockedError):
        await app.sync(config)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as info:
        app.mirror_directory(
            load_config(_with_directory(tmp_path, seeded, tmp_path / "file" / "mirror"))
        )
    assert str(info.value).startswith("[mirror] directory: cannot create")


def _with_directory(tmp_path: Path, upstream: FakeUpstream, directory: Path) -> Path:
    path = tmp_path / "other.conf"
    path.write_text(
        f"[mirror]\ndirectory = {directory}\nupstream = {upstream.base_url}\n"
        "allow-non-https = true\n"
    )
    return path
