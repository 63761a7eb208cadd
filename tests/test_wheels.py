"""A wheel's core metadata read from the archive: the bytes a PEP 658 ``.metadata``
sidecar holds, or None whenever the archive does not give them unambiguously."""

from __future__ import annotations

import io
import zipfile

from mirror.testing import make_wheel
from mirror.wheels import wheel_metadata

LIMIT = 1 << 20


def archive(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_the_metadata_member_of_a_wheel_is_returned_byte_for_byte() -> None:
    filename, wheel, metadata = make_wheel("Demo.Lib", "1.0", requires_dist=["idna>=3"])
    assert wheel_metadata(io.BytesIO(wheel), filename, max_bytes=LIMIT) == metadata


def test_a_file_that_is_not_a_wheel_gives_none() -> None:
    _, wheel, _ = make_wheel("demo", "1.0")
    assert wheel_metadata(io.BytesIO(wheel), "demo-1.0.tar.gz", max_bytes=LIMIT) is None
    assert wheel_metadata(io.BytesIO(wheel), "demo-1.0.whl", max_bytes=LIMIT) is None


def test_a_broken_archive_gives_none() -> None:
    name = "demo-1.0-py3-none-any.whl"
    assert wheel_metadata(io.BytesIO(b"not a zip at all"), name, max_bytes=LIMIT) is None


def test_metadata_over_the_limit_gives_none() -> None:
    filename, wheel, metadata = make_wheel("demo", "1.0")
    assert wheel_metadata(io.BytesIO(wheel), filename, max_bytes=len(metadata) - 1) is None


def test_the_only_dist_info_is_used_when_the_file_name_spells_it_otherwise() -> None:
    body = archive({"Demo-1.0.dist-info/METADATA": b"Name: Demo\n", "demo/__init__.py": b""})
    assert wheel_metadata(body, "demo-1.0-py3-none-any.whl", max_bytes=LIMIT) == b"Name: Demo\n"


def test_several_dist_infos_none_matching_the_name_give_none() -> None:
    body = archive({"a-1.0.dist-info/METADATA": b"a", "b-1.0.dist-info/METADATA": b"b"})
    assert wheel_metadata(body, "demo-1.0-py3-none-any.whl", max_bytes=LIMIT) is None


def test_of_several_dist_infos_the_one_matching_the_name_in_another_case_wins() -> None:
    body = archive({"Demo-1.0.dist-info/METADATA": b"d", "b-1.0.dist-info/METADATA": b"b"})
    assert wheel_metadata(body, "demo-1.0-py3-none-any.whl", max_bytes=LIMIT) == b"d"


def test_a_wheel_without_metadata_gives_none() -> None:
    body = archive({"demo/__init__.py": b""})
    assert wheel_metadata(body, "demo-1.0-py3-none-any.whl", max_bytes=LIMIT) is None
