"""Real, installable distribution files built in memory, byte for byte reproducible.

:func:`make_wheel` builds a PEP 427 wheel that pip installs; :func:`make_sdist` builds
a ``.tar.gz`` with a ``PKG-INFO``. Both use fixed timestamps and owners, so the same
arguments always give the same bytes (and therefore the same sha256 and the same
content-addressed upstream path), which keeps tests and benchmarks repeatable.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
import zipfile
from collections.abc import Mapping, Sequence

from packaging.utils import canonicalize_name

# The earliest timestamp a zip entry can carry; any fixed value makes the bytes stable.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_TAR_MTIME = 315_532_800  # 1980-01-01T00:00:00Z, the same instant as the zip entries
_GENERATOR = "mirror.testing"


def distribution_stem(name: str) -> str:
    """The file-name form of a project name: normalized, ``-`` replaced by ``_``
    (PEP 427 and PEP 625), e.g. ``beta.lib`` -> ``beta_lib``."""
    return canonicalize_name(name).replace("-", "_")


def core_metadata(
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
) -> bytes:
    """Core metadata 2.1 (the wheel's ``METADATA`` / the sdist's ``PKG-INFO``)."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines.append(f"Summary: {name} {version}, a generated test distribution")
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {requirement}" for requirement in requires_dist)
    return ("\n".join(lines) + "\n\n").encode()


def payload(name: str, version: str, size_bytes: int) -> bytes:
    """``size_bytes`` of incompressible but reproducible filler, so benchmark files
    really are as large as asked for, whatever compression the archive uses."""
    generator = random.Random(f"{name}=={version}")  # noqa: S311  # filler, not crypto
    # In pieces: randbytes cannot make more than 256 MiB at once (its bit count must
    # fit a C int).
    return b"".join(
        generator.randbytes(min(_PAYLOAD_PIECE_BYTES, size_bytes - start))
        for start in range(0, size_bytes, _PAYLOAD_PIECE_BYTES)
    )


_PAYLOAD_PIECE_BYTES = 64 << 20


def make_wheel(
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    modules: Mapping[str, str] | None = None,
    tag: str = "py3-none-any",
    payload_bytes: int = 0,
) -> tuple[str, bytes, bytes]:
    """Build a pure-Python wheel; return ``(filename, wheel bytes, METADATA bytes)``.

    The wheel holds ``modules`` (archive path -> source text), by default a single
    ``<stem>/__init__.py`` that records the version, plus a ``.dist-info`` with
    ``METADATA``, ``WHEEL`` and a ``RECORD`` of urlsafe-base64 sha256 hashes. The
    returned METADATA is byte for byte the one inside the wheel, as PEP 658 requires
    of the ``.metadata`` file an index serves beside it. ``tag`` only changes the
    file name and the ``Tag:`` line (for many-file benchmark releases);
    ``payload_bytes`` adds a stored data file of that size.
    """
    stem = distribution_stem(name)
    dist_info = f"{stem}-{version}.dist-info"
    metadata = core_metadata(
        name, version, requires_dist=requires_dist, requires_python=requires_python
    )
    if modules is None:
        modules = {f"{stem}/__init__.py": f'"""{name} {version}"""\n\n__version__ = "{version}"\n'}
    wheel_file = (
        f"Wheel-Version: 1.0\nGenerator: {_GENERATOR}\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    entries: list[tuple[str, bytes, int]] = [
        (path, text.encode(), zipfile.ZIP_DEFLATED) for path, text in sorted(modules.items())
    ]
    if payload_bytes:
        data = payload(name, version, payload_bytes)
        entries.append((f"{stem}/_payload.bin", data, zipfile.ZIP_STORED))
    entries.append((f"{dist_info}/METADATA", metadata, zipfile.ZIP_DEFLATED))
    entries.append((f"{dist_info}/WHEEL", wheel_file, zipfile.ZIP_DEFLATED))
    record_lines = [f"{path},sha256={_record_hash(data)},{len(data)}" for path, data, _ in entries]
    record_lines.append(f"{dist_info}/RECORD,,")
    record = ("\n".join(record_lines) + "\n").encode()
    entries.append((f"{dist_info}/RECORD", record, zipfile.ZIP_DEFLATED))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data, compression in entries:
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return f"{stem}-{version}-{tag}.whl", buffer.getvalue(), metadata


def make_sdist(
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    payload_bytes: int = 0,
) -> tuple[str, bytes]:
    """Build a source distribution; return ``(filename, .tar.gz bytes)``.

    The archive holds ``<stem>-<version>/PKG-INFO``, a ``pyproject.toml`` and the
    package's ``__init__.py`` (plus a ``payload_bytes`` data file when asked). It is
    for mirroring, not building: nothing here makes pip prefer it over the wheel.
    """
    stem = distribution_stem(name)
    root = f"{stem}-{version}"
    pyproject = (
        f'[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"'
        f'\n\n[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    members: list[tuple[str, bytes]] = [
        (
            "PKG-INFO",
            core_metadata(
                name, version, requires_dist=requires_dist, requires_python=requires_python
            ),
        ),
        ("pyproject.toml", pyproject.encode()),
        (f"{stem}/__init__.py", f'__version__ = "{version}"\n'.encode()),
    ]
    if payload_bytes:
        members.append((f"{stem}/_payload.bin", payload(name, version, payload_bytes)))
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, data in members:
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    # gzip's header carries a timestamp and a file name; pin both.
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", filename="", mtime=0) as stream:
        stream.write(tar_buffer.getvalue())
    return f"{root}.tar.gz", compressed.getvalue()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_provenance(filename: str, sha256: str, *, attestations: int = 1) -> bytes:
    """A PEP 740 provenance document for the file ``filename`` of digest ``sha256``, as
    Warehouse serves one: one bundle (a GitHub Trusted Publisher) of ``attestations``
    attestations, each an in-toto statement (base64) naming the file as its subject.
    The signature and certificate are placeholders (nothing here signs)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": "https://docs.pypi.org/attestations/publish/v1",
        "predicate": None,
    }
    encoded = base64.b64encode(json.dumps(statement, sort_keys=True).encode()).decode()
    attestation = {
        "version": 1,
        "verification_material": {"certificate": "", "transparency_entries": []},
        "envelope": {"statement": encoded, "signature": base64.b64encode(b"unsigned").decode()},
    }
    document = {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": "GitHub",
                    "repository": "example/project",
                    "workflow": "release.yml",
                    "environment": None,
                },
                "attestations": [attestation] * attestations,
            }
        ],
    }
    return json.dumps(document, sort_keys=True).encode()
