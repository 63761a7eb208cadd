"""PEP 740 provenance mirrored: each file's document fetched with it, kept beside it at
``<file>.provenance``, linked from the pages instead of upstream's, served with its
media type; refused when too large or not JSON (the file is then published without
one) and, with ``verify-provenance``, the file refused unless every attestation names
its sha256."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urljoin

import pytest
from aiohttp import ClientSession
from packaging.utils import NormalizedName

from mirror.bucketserver import create_bucket_app
from mirror.errors import ProvenanceError
from mirror.provenance import MAX_PROVENANCE_BYTES, PROVENANCE_MEDIA_TYPE, check_provenance
from mirror.server import running_server
from mirror.state import StateStore
from mirror.storage.s3 import S3Storage
from mirror.sync import SyncReport
from mirror.testing import FakeUpstream, make_provenance
from mirror.verify import verify
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_consistent, files_on_disk
from tests.test_s3_sync import on_s3

BOTH = frozenset({"html", "json"})
SHA = "ab" * 32
WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"


def page_files(web: Path, name: str = "demo") -> dict[str, dict[str, object]]:
    page = json.loads((web / "simple" / name / "index.v1_json").read_bytes())
    return {entry["filename"]: entry for entry in page["files"]}


def provenance_on_disk(web: Path, name: str, filename: str) -> Path | None:
    """The copy the JSON page links for ``filename``, checked to be what the HTML
    page links too; None when neither links one."""
    entry = page_files(web, name)[filename]
    html = (web / "simple" / name / "index.html").read_text()
    if entry["provenance"] is None:
        assert "data-provenance" not in html
        return None
    href = str(entry["provenance"])
    assert not href.startswith("http"), "never upstream's"
    assert f'data-provenance="{href}"' in html
    url = urljoin(f"http://mirror/simple/{name}/", href)
    return web / unquote(url.removeprefix("http://mirror/"))


async def get(url: str) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a GET of ``url``."""
    async with ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.read()


def statement(digest: str) -> str:
    body = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"sha256": digest}}]}
    return base64.b64encode(json.dumps(body).encode()).decode()


def document(*statements: object) -> bytes:
    attestations = [{"envelope": {"statement": s}} for s in statements]
    return json.dumps({"attestation_bundles": [{"attestations": attestations}]}).encode()


# --- the pure check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "verify_subjects", "error"),
    [
        (make_provenance(WHEEL, SHA), True, None),
        (make_provenance(WHEEL, SHA, attestations=2), True, None),
        (make_provenance(WHEEL, "cd" * 32), False, None),
        (b"[]", False, "not a JSON object"),
        (b"{not json", False, "not JSON"),
        (b"\xff\xfe", False, "not JSON"),
        (b" " * (MAX_PROVENANCE_BYTES + 1), False, "more than"),
        (make_provenance(WHEEL, "cd" * 32), True, f"not the file's {SHA}"),
        (document(statement(SHA), statement("cd" * 32)), True, r"attestations\[1\] attests"),
        (b"{}", True, "no attestation_bundles"),
        (json.dumps({"attestation_bundles": [1]}).encode(), True, r"\[0\].attestations"),
        (json.dumps({"attestation_bundles": []}).encode(), True, "no attestation"),
        (document(1), True, r"envelope.statement: missing"),
        (document("!!"), True, "not base64 JSON"),
        (document(base64.b64encode(b"[]").decode()), True, "no subject list"),
        (
            document(base64.b64encode(b'{"subject": [1, {"digest": 2}]}').decode()),
            True,
            "attests no sha256",
        ),
    ],
)
def test_what_a_provenance_must_be_to_be_kept(
    body: bytes, verify_subjects: bool, error: str | None
) -> None:
    if error is None:
        check_provenance(body, filename=WHEEL, sha256=SHA, verify_subjects=verify_subjects)
        return
    with pytest.raises(ProvenanceError, match=error):
        check_provenance(body, filename=WHEEL, sha256=SHA, verify_subjects=verify_subjects)


# --- mirrored --------------------------------------------------------------------------


async def test_provenance_is_mirrored_beside_each_file_linked_locally_and_verified(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True)
    upstream.add_release("plain", "1.0")
    report = await runner.sync()
    assert report.ok
    web = runner.web
    with runner.state() as state:
        rows = {row.filename: row for row in state.project_files(NormalizedName("demo")).values()}
    for filename in (WHEEL, SDIST):
        copy = provenance_on_disk(web, "demo", filename)
        assert copy is not None
        assert copy.name == f"{filename}.provenance"
        assert copy.parent == (web / rows[filename].path).parent, "stored beside the file"
        body = copy.read_bytes()
        sha256 = hashlib.sha256((web / rows[filename].path).read_bytes()).hexdigest()
        assert body == make_provenance(filename, sha256)
        assert rows[filename].provenance_sha256 == hashlib.sha256(body).hexdigest()
        assert rows[filename].provenance_size == len(body)
    assert provenance_on_disk(web, "plain", "plain-1.0.tar.gz") is None
    assert_consistent(runner.directory)
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()
    with runner.state() as state:
        # The size counts the copies too.
        assert state.recount_totals() == state.totals()
        assert state.totals().bytes == sum(
            p.stat().st_size for p in (web / "packages").rglob("*") if p.is_file()
        )

    href = page_files(web)[WHEEL]["provenance"]
    async with running_server(web, port=0, access_log=False) as url:
        status, media_type, body = await get(urljoin(f"{url}/simple/demo/", str(href)))
    assert (status, media_type) == (200, PROVENANCE_MEDIA_TYPE)
    assert body == copy_of(web, WHEEL)

    # Nothing is fetched again; a removed file takes its copy with it.
    report = await runner.sync()
    assert report.files_downloaded == 0
    upstream.remove_file("Demo", WHEEL)
    await runner.sync()
    assert not any(name.startswith(WHEEL) for name in files_on_disk(runner.directory))
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()


def copy_of(web: Path, filename: str) -> bytes:
    copy = provenance_on_disk(web, "demo", filename)
    assert copy is not None
    return copy.read_bytes()


async def synced_then_copy_lost(upstream: FakeUpstream, runner: MirrorRunner) -> tuple[Path, bytes]:
    """Demo 1.0's wheel synced with its provenance, then the copy deleted and forgotten
    by the state's raw rows: the next sync of the project fetches the copy alone.
    Returns the copy's path and the bytes it held."""
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    await runner.sync()
    copy = provenance_on_disk(runner.web, "demo", WHEEL)
    assert copy is not None
    body = copy.read_bytes()
    copy.unlink()
    raw = sqlite3.connect(runner.directory / "mirror.db")
    raw.execute("UPDATE files SET provenance_sha256 = NULL, provenance_size = NULL")
    raw.commit()
    raw.close()
    return copy, body


@pytest.mark.parametrize(
    "fault",
    [b"{not json", b'{"x": "' + b"y" * (2 * MAX_PROVENANCE_BYTES) + b'"}', None],
    ids=["invalid-json", "too-large", "missing"],
)
async def test_an_unusable_provenance_leaves_the_file_published_without_one(
    upstream: FakeUpstream, runner: MirrorRunner, fault: bytes | None
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    upstream.set_provenance(WHEEL, fault)
    report = await runner.sync()
    assert report.ok
    assert WHEEL in page_files(runner.web)
    assert provenance_on_disk(runner.web, "demo", WHEEL) is None
    assert not list((runner.web / "packages").rglob("*.provenance"))
    # About the cap at most, never the whole endless body.
    assert report.bytes_downloaded < 2 * MAX_PROVENANCE_BYTES
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()

    # Fixed upstream: the next sync of the project takes it.
    upstream.add_release("Demo", "1.1", sdist=False)
    with runner.state() as state:
        wheel_sha = next(iter(state.project_files(NormalizedName("demo")).values())).sha256
    upstream.set_provenance(WHEEL, make_provenance(WHEEL, wheel_sha))
    assert (await runner.sync()).ok
    assert copy_of(runner.web, WHEEL) == make_provenance(WHEEL, wheel_sha)


async def test_verify_provenance_refuses_a_file_whose_attestation_names_another_digest(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    runner.options = dataclasses.replace(runner.options, verify_provenance=True)
    upstream.add_release("Demo", "1.0", provenance=True)
    upstream.set_provenance(WHEEL, make_provenance(WHEEL, "cd" * 32))
    report = await runner.sync()
    # The sdist, whose provenance is its own, is mirrored; the wheel is left out (as a
    # filter would) and collected from the disk; the project is in step otherwise.
    assert report.ok
    assert set(page_files(runner.web)) == {SDIST}
    assert copy_of(runner.web, SDIST)
    assert not any(name.startswith(WHEEL) for name in files_on_disk(runner.directory))
    assert_consistent(runner.directory)


async def test_verify_provenance_turned_on_refuses_a_recorded_file_that_fails_it(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    upstream.set_provenance(WHEEL, b"{not json")
    assert (await runner.sync()).ok
    assert WHEEL in page_files(runner.web)
    runner.options = dataclasses.replace(runner.options, verify_provenance=True)
    upstream.set_provenance(WHEEL, make_provenance(WHEEL, "cd" * 32))
    upstream.add_release("Demo", "1.1", sdist=False)
    report = await runner.sync()
    assert report.ok
    assert set(page_files(runner.web)) == {"demo-1.1-py3-none-any.whl"}
    assert not any(name.startswith(WHEEL) for name in files_on_disk(runner.directory))
    with runner.state() as state:
        assert [row.filename for row in state.project_files(NormalizedName("demo")).values()] == [
            "demo-1.1-py3-none-any.whl"
        ]
    assert_consistent(runner.directory)


async def test_verify_finds_a_missing_copy_and_a_page_linking_upstreams(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    await runner.sync()
    copy = provenance_on_disk(runner.web, "demo", WHEEL)
    assert copy is not None
    copy.unlink()
    page = runner.web / "simple" / "demo" / "index.v1_json"
    data = json.loads(page.read_bytes())
    data["files"][0]["provenance"] = "https://pypi.org/integrity/demo/1.0/x/provenance"
    page.write_text(json.dumps(data))
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    kinds = sorted((p.kind, p.path.rsplit("/", 1)[-1]) for p in outcome.report.problems)
    assert kinds == [("bad-link", "index.v1_json"), ("missing", f"{WHEEL}.provenance")]

    async def resync(names: Sequence[NormalizedName]) -> SyncReport:
        return await runner.sync(list(names))

    repaired = await verify(runner.directory, formats=BOTH, repair=True, resync=resync)
    assert repaired.ok
    assert copy.is_file()


async def test_an_orphan_copy_is_found_and_a_recorded_one_is_not(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    await runner.sync()
    stray = runner.web / "packages" / "aa" / "bb" / "cc" / "x-1.0.tar.gz.provenance"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"{}")
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert [(p.kind, p.path) for p in outcome.report.problems] == [
        ("orphan", "packages/aa/bb/cc/x-1.0.tar.gz.provenance")
    ]


def test_a_version_6_store_forgets_the_provenance_urls_its_history_kept(tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    with StateStore.open(path) as state:
        del state
    import sqlite3  # noqa: PLC0415  # only this test writes the raw database

    raw = sqlite3.connect(path)
    raw.execute(
        "INSERT INTO file_history (path, project, filename, size, sha256, provenance,"
        " mirrored_at, mirrored_serial) VALUES ('packages/a/b/x.whl', 'x', 'x.whl', 1, 's',"
        " 'https://pypi.org/integrity/x', 0, 0)"
    )
    raw.execute("ALTER TABLE files DROP COLUMN provenance_size")
    raw.execute("ALTER TABLE files DROP COLUMN provenance_sha256")
    raw.execute("DROP TABLE page_validators")  # schema 8's: not in a version 6 store
    raw.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with StateStore.open(path) as state:
        [row] = state.file_history(NormalizedName("x"))
        assert row.provenance is None


async def test_the_bucket_serves_a_copy_with_its_media_type(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    assert (await on_s3(runner, s3_storage).sync()).ok
    listed = [f.path async for f in s3_storage.list_files("packages")]
    [copy] = [path for path in listed if path.endswith(".provenance")]
    head = await s3_storage.client.head_object(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of(copy)
    )
    assert head["ContentType"] == PROVENANCE_MEDIA_TYPE
    app = create_bucket_app(s3_storage)
    async with running_server(Path("/nonexistent"), port=0, app=app, access_log=False) as url:
        status, media_type, body = await get(f"{url}/{copy}")
    assert (status, media_type) == (200, PROVENANCE_MEDIA_TYPE)
    check_provenance(body, filename=WHEEL, sha256=SHA, verify_subjects=False)


async def test_a_file_that_fails_leaves_no_copy_behind(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Demo", "1.0", provenance=True, sdist=False)
    upstream.fail_next("/packages/", status=404, times=10)
    report = await runner.sync()
    assert not report.ok
    assert not list(runner.web.rglob("*.provenance"))
    assert_consistent(runner.directory)


async def test_a_recorded_file_without_its_copy_gets_only_the_copy(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    _, body = await synced_then_copy_lost(upstream, runner)
    upstream.add_release("Demo", "1.1", sdist=False)
    report = await runner.sync()
    assert report.ok
    # The new release's wheel and its .metadata, the two copies: the old wheel stays.
    assert copy_of(runner.web, WHEEL) == body
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()


async def test_storing_a_copy_leaves_the_temps_beside_it_alone(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    # A copy shares its file's directory and is stored while the file's own temp may
    # still be written there: storing it must not sweep that temp away (write_files'
    # stale-temp sweep in a writer process did, and the file then failed, ENOENT).
    copy, _ = await synced_then_copy_lost(upstream, runner)
    in_flight = copy.parent / f".{WHEEL}.inflight.part"
    in_flight.write_bytes(b"half a wheel")
    upstream.add_release("Demo", "1.1", sdist=False)
    report = await runner.sync()
    assert report.ok, report
    assert copy.is_file()
    assert in_flight.read_bytes() == b"half a wheel"
