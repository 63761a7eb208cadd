"""Running syncs in-process against the fake upstream, and the CLI's config, for the
integration tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from mirror.progress import ProgressSink
from mirror.state import StateStore
from mirror.storage import FileSystemStorage, Storage
from mirror.sync import Syncer, SyncOptions, SyncReport
from mirror.testing import FakeUpstream
from mirror.upstream import Upstream, UpstreamSettings


def write_config(tmp_path: Path, upstream_url: str, **extra: str) -> Path:
    """``tmp_path/mirror.conf`` for the CLI: the mirror in ``tmp_path/mirror``, following
    ``upstream_url`` over plain HTTP with two workers and no retries (the CLI's client
    sleeps for real between attempts), then the ``extra`` keys of ``[mirror]``."""
    lines = [
        "[mirror]",
        f"directory = {tmp_path / 'mirror'}",
        f"upstream = {upstream_url}",
        "allow-non-https = true",
        "retries = 0",
        "workers = 2",
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    path = tmp_path / "mirror.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


async def no_sleep(seconds: float) -> None:
    """Injected instead of asyncio.sleep so retries never make a test wait."""
    del seconds


@dataclass
class Clock:
    """A clock the test moves by hand (back-off times are compared with it)."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class MirrorRunner:
    """Runs syncs of one mirror directory against the fake upstream, in-process."""

    upstream: FakeUpstream
    directory: Path
    clock: Clock = field(default_factory=Clock)
    options: SyncOptions = field(
        default_factory=lambda: SyncOptions(workers=3, retry_base_seconds=60)
    )
    storage_factory: Callable[[Path], Storage] = FileSystemStorage
    retries: int = 2
    backoff_base_seconds: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    """Every back-off the upstream client asked for, in seconds (none is waited)."""

    async def record_sleep(self, seconds: float) -> None:
        """The injected sleep: notes the back-off and returns at once."""
        self.sleeps.append(seconds)

    @property
    def web(self) -> Path:
        return self.directory / "web"

    def state(self) -> StateStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        return StateStore.open(self.directory / "mirror.db")

    async def sync(
        self, projects: Sequence[str] | None = None, *, progress: ProgressSink | None = None
    ) -> SyncReport:
        names: list[NormalizedName] | None = (
            [canonicalize_name(p) for p in projects] if projects is not None else None
        )
        settings = UpstreamSettings(
            base_url=self.upstream.base_url,
            retries=self.retries,
            backoff_base_seconds=self.backoff_base_seconds,
        )
        async with (
            Upstream(settings, sleep=self.record_sleep) as client,
            self.storage_factory(self.web) as storage,
        ):
            with self.state() as state:
                syncer = Syncer(
                    upstream=client,
                    storage=storage,
                    state=state,
                    options=self.options,
                    clock=self.clock,
                    progress=progress,
                )
                return await syncer.run(projects=names)
