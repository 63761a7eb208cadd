"""The mirror directory's run lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.errors import LockedError, StorageError
from mirror.lock import mirror_lock


def test_the_lock_is_exclusive_and_released_at_the_end_of_the_block(tmp_path: Path) -> None:
    with (
        mirror_lock(tmp_path),
        pytest.raises(LockedError, match="another mirror run holds"),
        mirror_lock(tmp_path),
    ):
        pass
    with mirror_lock(tmp_path):
        pass


def test_a_lock_file_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(StorageError, match="cannot create lock file"),
        mirror_lock(tmp_path / "file"),
    ):
        pass
