"""What the mirror reads inside a wheel: its core metadata.

A wheel's PEP 658 ``.metadata`` file is, on PyPI, the wheel's own
``<name>-<version>.dist-info/METADATA`` byte for byte (Warehouse extracts it at upload),
so once the wheel is on disk the sidecar can be taken from it instead of fetched: one
request fewer per wheel. The caller still checks the bytes against the advertised
sha256 and fetches the file when they differ; nothing here is trusted on its own.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import BinaryIO

_METADATA = "METADATA"
_DIST_INFO_SUFFIX = ".dist-info"

# What a damaged or hostile archive can raise while its directory or a member is
# read: each means "not derivable here", never a failure of the sync.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    ValueError,
)


def wheel_metadata(archive: BinaryIO, filename: str, *, max_bytes: int) -> bytes | None:
    """The ``METADATA`` member of the wheel ``filename`` read from ``archive``, or None.

    The member is ``<name>-<version>.dist-info/METADATA`` with name and version taken
    from the file name, as Warehouse does; failing that, the archive's only top-level
    ``*.dist-info/METADATA``. None for a file that is not a wheel, an archive that
    cannot be read, no (or an ambiguous) member, or one larger than ``max_bytes``
    (checked as it is inflated, so a zip bomb costs nothing). Blocking: call it in a
    worker thread. OSError from ``archive`` propagates.
    """
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:  # name-version[-build]-python-abi-platform
        return None
    preferred = f"{parts[0]}-{parts[1]}{_DIST_INFO_SUFFIX}/{_METADATA}"
    try:
        with zipfile.ZipFile(archive) as wheel:
            member = _metadata_member(wheel, preferred)
            if member is None or member.file_size > max_bytes:
                return None
            with wheel.open(member) as stream:
                data = stream.read(max_bytes + 1)
    except _ARCHIVE_ERRORS:
        return None
    return data if len(data) <= max_bytes else None


def _metadata_member(wheel: zipfile.ZipFile, preferred: str) -> zipfile.ZipInfo | None:
    try:
        return wheel.getinfo(preferred)
    except KeyError:
        pass
    candidates = [
        info
        for info in wheel.infolist()
        if info.filename.count("/") == 1
        and info.filename.endswith(f"{_DIST_INFO_SUFFIX}/{_METADATA}")
    ]
    if len(candidates) == 1:
        return candidates[0]
    matching = [info for info in candidates if info.filename.lower() == preferred.lower()]
    return matching[0] if len(matching) == 1 else None
