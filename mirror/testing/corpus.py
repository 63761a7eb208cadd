"""A generated, reproducible corpus of projects for the fake upstream.

Projects are named ``proj-0000``, ``proj-0001``, ...; each gets a few releases of an
sdist and real installable wheels (with ``.metadata``), some ``Requires-Dist`` on
lower-numbered projects (so ``proj-0000`` never needs anything else, and any prefix
of the corpus is self-contained), some ``Requires-Python`` and the odd yanked old
release. Everything follows from ``seed``; file sizes and counts scale for
benchmarks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mirror.testing.distributions import make_sdist, make_wheel
from mirror.testing.upstream import FakeUpstream

_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "musllinux_1_2_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
)
_REQUIRES_PYTHON = (None, None, ">=3.8", ">=3.9,<4")
_YANK_EVERY = 5  # every fifth project has its oldest release yanked


def corpus_name(index: int) -> str:
    """The name of the ``index``-th generated project: ``proj-0000`` and so on."""
    return f"proj-{index:04d}"


def wheel_tag(index: int) -> str:
    """Distinct wheel tags for the files of one release: ``py3-none-any`` first (the
    one pip installs here), then CPython platform tags."""
    if index == 0:
        return "py3-none-any"
    minor = 10 + (index - 1) // len(_PLATFORMS)
    platform = _PLATFORMS[(index - 1) % len(_PLATFORMS)]
    return f"cp3{minor}-cp3{minor}-{platform}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _PlannedRelease:
    project: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str | None


def generate_corpus(
    upstream: FakeUpstream,
    *,
    projects: int,
    seed: int = 0,
    releases_per_project: int | None = None,
    wheels_per_release: int = 1,
    sdists: bool = True,
    file_size_bytes: int = 0,
) -> None:
    """Publish ``projects`` generated projects on ``upstream``.

    ``releases_per_project`` fixes the release count (default: 1 to 3, from the
    seed). Each release has an sdist (unless ``sdists`` is false) and
    ``wheels_per_release`` wheels; ``file_size_bytes`` adds that much incompressible
    payload to every file. Releases are published round by round (every project's
    first release, then every second one), so projects interleave in the journal as
    they do on PyPI. Every fifth project has its oldest release yanked (with a
    reason that needs HTML escaping).
    """
    rng = random.Random(seed)  # noqa: S311  # reproducible test data, not crypto
    plans: list[list[_PlannedRelease]] = []
    for index in range(projects):
        count = releases_per_project or rng.randint(1, 3)
        if releases_per_project is None and index % _YANK_EVERY == _YANK_EVERY - 1:
            count = max(count, 2)  # so that this project has an old release to yank
        requires: tuple[str, ...] = ()
        if index > 0 and rng.random() < 0.5:
            requires = (f"{corpus_name(rng.randrange(index))}>=1.0",)
        requires_python = rng.choice(_REQUIRES_PYTHON)
        plans.append(
            [
                _PlannedRelease(
                    project=corpus_name(index),
                    version=f"{1 + k // 2}.{k % 2}",
                    requires_dist=requires,
                    requires_python=requires_python,
                )
                for k in range(count)
            ]
        )
    rounds = max((len(plan) for plan in plans), default=0)
    for round_index in range(rounds):
        for plan in plans:
            if round_index < len(plan):
                _publish(upstream, plan[round_index], wheels_per_release, sdists, file_size_bytes)
    for index, plan in enumerate(plans):
        if len(plan) > 1 and index % _YANK_EVERY == _YANK_EVERY - 1:
            upstream.yank(plan[0].project, plan[0].version, reason="superseded by <1.1>")


def _publish(
    upstream: FakeUpstream,
    release: _PlannedRelease,
    wheels: int,
    sdists: bool,
    file_size_bytes: int,
) -> None:
    name, version = release.project, release.version
    # An empty release first, so the JSON API's info carries its requirements even
    # though the sdist (uploaded first) has no .metadata to read them from.
    upstream.add_release(
        name,
        version,
        requires_dist=release.requires_dist,
        requires_python=release.requires_python,
        sdist=False,
        wheel=False,
    )
    if sdists:
        filename, content = make_sdist(
            name,
            version,
            requires_dist=release.requires_dist,
            requires_python=release.requires_python,
            payload_bytes=file_size_bytes,
        )
        upstream.add_file(name, version, filename, content, requires_python=release.requires_python)
    for index in range(wheels):
        filename, content, metadata = make_wheel(
            name,
            version,
            requires_dist=release.requires_dist,
            requires_python=release.requires_python,
            tag=wheel_tag(index),
            payload_bytes=file_size_bytes,
        )
        upstream.add_file(
            name,
            version,
            filename,
            content,
            metadata=metadata,
            requires_python=release.requires_python,
        )
