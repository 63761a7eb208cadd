"""Shared fixtures: a fake upstream on loopback and a mirror runner in a temp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def runner(upstream: FakeUpstream, tmp_path: Path) -> MirrorRunner:
    return MirrorRunner(upstream=upstream, directory=tmp_path / "mirror")
