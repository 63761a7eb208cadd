"""``mirror adopt`` on bandersnatch trees written by hand (mirror/adopt.py, app, cli),
and bandersnatch's state files parsed (mirror/bandersnatchstate.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.utils import NormalizedName, canonicalize_name

from mirror import adopt as adopt_module
from mirror import app
from mirror.adopt import DONE, AdoptReport, read_tree
from mirror.bandersnatchstate import page_title, parse_html_page, parse_json_page, parse_todo
from mirror.changes import Changes, reconciled
from mirror.cli import main
from mirror.errors import AdoptError, ConfigError
from mirror.layout import package_path
from mirror.models import Serial
from mirror.state import ADOPT_PROGRESS_KEY, ADOPT_RECONCILE_KEY, StateStore
from tests.mirrorcheck import assert_consistent


@dataclass
class Dist:
    filename: str
    body: bytes
    metadata: bytes | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def path(self) -> str:
        digest = hashlib.blake2b(self.body, digest_size=32).hexdigest()
        return f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{self.filename}"


@dataclass
class Bandersnatch:
    """A bandersnatch mirror directory written the way bandersnatch 8.2 writes it."""

    directory: Path
    html: bool = True
    json: bool = True
    hash_index: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def web(self) -> Path:
        return self.directory / "web"

    def conf(self, text: str = "") -> Path:
        path = self.directory.parent / "bandersnatch.conf"
        lines = ["[mirror]", f"directory = {self.directory}", "master = https://pypi.org"]
        if self.hash_index:
            lines.append("hash-index = true")
        fmt = "ALL" if self.html and self.json else ("HTML" if self.html else "JSON")
        lines.append(f"simple-format = {fmt}")
        path.write_text("\n".join(lines) + "\n" + text)
        return path

    def state(self, *, serial: int | None = 100, generation: str = "5") -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "generation").write_text(generation)
        if serial is not None:
            (self.directory / "status").write_text(str(serial))

    def project(self, name: str, dists: list[Dist], *, serial: int = 50) -> Path:
        key = canonicalize_name(name)
        page = self.web / "simple" / (f"{key[0]}/{key}" if self.hash_index else key)
        page.mkdir(parents=True, exist_ok=True)
        for dist in dists:
            target = self.web / dist.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(dist.body)
            if dist.metadata is not None:
                Path(f"{target}.metadata").write_bytes(dist.metadata)
        links = []
        files = []
        for dist in sorted(dists, key=lambda d: d.filename):
            meta = ""
            core: object = False
            if dist.metadata is not None:
                digest = hashlib.sha256(dist.metadata).hexdigest()
                meta = (
                    f' data-core-metadata="sha256={digest}"'
                    f' data-dist-info-metadata="sha256={digest}"'
                )
                core = {"sha256": digest}
            href = f"../../{dist.path}#sha256={dist.sha256}"
            links.append(f'    <a href="{href}"{meta}>{dist.filename}</a><br/>')
            files.append(
                {
                    "filename": dist.filename,
                    "hashes": {"sha256": dist.sha256},
                    "requires-python": "",
                    "size": len(dist.body),
                    "upload-time": "",
                    "url": f"../../{dist.path}",
                    "yanked": False,
                    "core-metadata": core,
                }
            )
        html = (
            "<!DOCTYPE html>\n<html>\n  <head>\n    <title>Links for "
            f"{name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
            + "\n".join(links)
            + f"\n  </body>\n</html>\n<!--SERIAL {serial}-->"
        )
        if self.html:
            (page / "index.html").write_text(html)
            (page / "index.v1_html").write_text(html)
        if self.json:
            body = {
                "files": files,
                "meta": {"api-version": "1.1", "_last-serial": str(serial)},
                "name": key,
                "versions": ["1.0"],
            }
            (page / "index.v1_json").write_text(json.dumps(body))
        return page


def dists(name: str, *, metadata: bool = True) -> list[Dist]:
    return [
        Dist(f"{name}-1.0.tar.gz", f"sdist of {name}".encode()),
        Dist(
            f"{name}-1.0-py3-none-any.whl",
            f"wheel of {name}".encode() * 50,
            f"Metadata-Version: 2.1\nName: {name}\n".encode() if metadata else None,
        ),
    ]


@pytest.fixture
def bs(tmp_path: Path) -> Bandersnatch:
    tree = Bandersnatch(tmp_path / "pypi")
    tree.state()
    return tree


async def adopt(
    bs: Bandersnatch, tmp_path: Path, *, trust_sizes: bool = False, conf: Path | None = None
) -> AdoptReport:
    plan = app.plan_adoption(tmp_path / "mirror.conf", conf or bs.conf())
    config = app.adoption_config(plan)
    return await app.adopt(config, plan.tree, trust_sizes=trust_sizes, threads=2)


def state_of(bs: Bandersnatch) -> StateStore:
    return StateStore.open(bs.directory / "mirror.db")


async def test_adopts_every_intact_file_and_rewrites_the_pages(
    bs: Bandersnatch, tmp_path: Path
) -> None:
    bs.project("Alpha", dists("alpha"), serial=60)
    bs.project("beta", dists("beta"), serial=70)
    report = await adopt(bs, tmp_path)
    assert (report.projects, report.files_adopted, report.missing, report.corrupt) == (2, 4, [], [])
    assert report.bytes_hashed == report.bytes_adopted > 0
    assert report.serial == 100
    assert "adopted 2 project(s): 4 file(s)" in report.summary()
    assert_consistent(bs.directory)
    with state_of(bs) as state:
        assert state.mirror_serial() == 100
        assert state.get_meta(ADOPT_RECONCILE_KEY) == "100"
        assert state.get_meta(ADOPT_PROGRESS_KEY) == DONE
        row = state.project(NormalizedName("alpha"))
        assert row is not None
        assert (row.display_name, row.serial, row.file_count) == ("Alpha", 60, 2)
        wheel = state.file(package_path(dists("alpha")[1].path))
        assert wheel is not None
        assert wheel.metadata_sha256 is not None
        assert state.todo_count() == 0
    page = json.loads((bs.web / "simple" / "alpha" / "index.v1_json").read_bytes())
    assert page["meta"]["_last-serial"] == 60  # ours: a number
    root = json.loads((bs.web / "simple" / "index.v1_json").read_bytes())
    assert [p["name"] for p in root["projects"]] == ["Alpha", "beta"]


async def test_html_only_pages_take_sizes_from_the_disk(tmp_path: Path) -> None:
    bs = Bandersnatch(tmp_path / "pypi", json=False)
    bs.state()
    bs.project("alpha", dists("alpha"))
    report = await adopt(bs, tmp_path)
    assert report.files_adopted == 2
    assert_consistent(bs.directory)
    text = (tmp_path / "mirror.conf").read_text()
    assert "formats = html" in text


async def test_hash_index_pages_are_read_and_ours_written_at_simple_project(
    tmp_path: Path,
) -> None:
    bs = Bandersnatch(tmp_path / "pypi", hash_index=True)
    bs.state()
    old = bs.project("alpha", dists("alpha"))
    assert old == bs.web / "simple" / "a" / "alpha"
    report = await adopt(bs, tmp_path)
    assert report.files_adopted == 2
    assert (bs.web / "simple" / "alpha" / "index.v1_json").exists()
    assert "[mirror] hash-index = true" in (tmp_path / "mirror.conf").read_text()


async def test_missing_corrupt_and_sidecar_troubles_are_queued_never_linked(
    bs: Bandersnatch, tmp_path: Path
) -> None:
    alpha, beta, gamma, delta = dists("alpha"), dists("beta"), dists("gamma"), dists("delta")
    bs.project("alpha", alpha, serial=61)
    bs.project("beta", beta, serial=62)
    bs.project("gamma", gamma, serial=63)
    bs.project("delta", delta, serial=64)
    (bs.web / "simple" / "empty").mkdir()  # a page directory without a page
    (bs.web / alpha[0].path).unlink()
    (bs.web / beta[0].path).write_bytes(b"X" * len(beta[0].body))  # same size
    Path(f"{bs.web / gamma[1].path}.metadata").unlink()
    Path(f"{bs.web / delta[1].path}.metadata").write_bytes(b"altered")
    report = await adopt(bs, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in report.missing] == [alpha[0].filename]
    assert [p.rsplit("/", 1)[-1] for p in report.corrupt] == [beta[0].filename]
    assert report.files_adopted == 6
    assert report.unreadable == ["empty"]
    assert_consistent(bs.directory)
    gamma_page = json.loads((bs.web / "simple" / "gamma" / "index.v1_json").read_bytes())
    assert [f["core-metadata"] for f in gamma_page["files"]] == [False, False]
    with state_of(bs) as state:
        assert {(i.name, i.serial) for i in state.due(now=1e12)} == {
            ("alpha", 61),
            ("beta", 62),
            ("gamma", 63),
            ("delta", 64),
            ("empty", 0),
        }


async def test_trust_sizes_checks_sizes_only(bs: Bandersnatch, tmp_path: Path) -> None:
    alpha = dists("alpha")
    bs.project("alpha", alpha)
    (bs.web / alpha[0].path).write_bytes(b"X" * len(alpha[0].body))  # same size: not seen
    (bs.web / alpha[1].path).write_bytes(b"short")
    report = await adopt(bs, tmp_path, trust_sizes=True)
    assert report.bytes_hashed == 0
    assert report.files_adopted == 1
    assert [p.rsplit("/", 1)[-1] for p in report.corrupt] == [alpha[1].filename]


async def test_orphans_go_to_the_garbage_but_sidecars_and_foreign_names_do_not(
    bs: Bandersnatch, tmp_path: Path
) -> None:
    bs.project("alpha", dists("alpha"))
    stray = bs.web / "packages" / "aa" / "bb" / ("c" * 60) / "stray-1.0.tar.gz"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    foreign = bs.web / "packages" / "aa" / "bad\x01name"
    foreign.write_bytes(b"x")
    json_copy = bs.web / "json" / "alpha"
    json_copy.parent.mkdir()
    json_copy.write_text("{}")
    report = await adopt(bs, tmp_path)
    assert report.orphaned == 1
    assert report.json_copies == 1
    with state_of(bs) as state:
        assert state.garbage() == [package_path(stray.relative_to(bs.web).as_posix())]


async def test_an_interrupted_adoption_resumes_after_its_last_chunk(
    bs: Bandersnatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["a1", "a2", "a3"]:
        bs.project(name, dists(name))
    monkeypatch.setattr(adopt_module, "_CHUNK_PROJECTS", 1)

    class StopError(Exception):
        pass

    class StopAfterTwo:
        done = 0

        def start(self, projects: int) -> None:
            assert projects == 3

        def project_done(self, *, ok: bool) -> None:
            assert ok
            self.done += 1
            if self.done == 2:
                raise StopError

        def bytes_downloaded(self, count: int) -> None:
            assert count > 0

        def finish(self) -> None:
            pass

    plan = app.plan_adoption(tmp_path / "mirror.conf", bs.conf())
    config = app.adoption_config(plan)
    with pytest.raises(StopError):
        await app.adopt(config, plan.tree, trust_sizes=False, progress=StopAfterTwo())
    with state_of(bs) as state:
        assert state.get_meta(ADOPT_PROGRESS_KEY) == "a1"
        assert state.mirror_serial() is None  # only set once every project is in
    plan = app.plan_adoption(tmp_path / "mirror.conf", bs.conf())
    assert plan.config_exists
    report = await app.adopt(app.adoption_config(plan), plan.tree, trust_sizes=False)
    assert report.resumed_after == "a1"
    assert report.projects == 2
    with state_of(bs) as state:
        assert {row.name for row in state.iter_projects()} == {"a1", "a2", "a3"}
        assert state.mirror_serial() == 100
    with pytest.raises(AdoptError, match="adopted already"):
        await adopt(bs, tmp_path)


async def test_an_unreadable_page_is_queued_and_left_alone(
    bs: Bandersnatch, tmp_path: Path
) -> None:
    page = bs.project("alpha", dists("alpha"))
    (page / "index.v1_json").write_text("{not json")
    report = await adopt(bs, tmp_path)
    assert report.unreadable == ["alpha"]
    assert (page / "index.v1_json").read_text() == "{not json"
    with state_of(bs) as state:
        assert [(i.name, i.serial) for i in state.due(now=1e12)] == [("alpha", 0)]


async def test_a_first_run_interrupted_leaves_no_serial_and_queues_its_todo(
    tmp_path: Path,
) -> None:
    bs = Bandersnatch(tmp_path / "pypi")
    bs.state(serial=None)
    bs.project("alpha", dists("alpha"))
    (bs.directory / "todo").write_text("120\nalpha 110\nBeta.Pkg 115\n\n")
    report = await adopt(bs, tmp_path)
    assert report.serial is None
    assert report.queued == 2
    with state_of(bs) as state:
        assert state.mirror_serial() is None
        assert state.get_meta(ADOPT_RECONCILE_KEY) is None
        assert {(i.name, i.serial) for i in state.due(now=1e12)} == {
            ("alpha", 110),
            ("beta-pkg", 115),
        }


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"generation": "4"}, "generation 4"),
        ({"generation": "x"}, "generation: expected a whole number"),
        ({"status": "soon"}, "status: expected"),
        ({"todo": "abc\n"}, "todo \\(first line\\)"),
        ({"todo": "\n"}, "todo: empty"),
        ({"todo": "12\nnoserial\n"}, "todo, line 2"),
    ],
)
def test_malformed_state_files_are_adopt_errors(
    bs: Bandersnatch, files: dict[str, str], words: str
) -> None:
    for name, text in files.items():
        (bs.directory / name).write_text(text)
    with pytest.raises(AdoptError, match=words):
        read_tree(bs.directory, hash_index=False)


def test_an_unreadable_state_file_is_an_adopt_error(bs: Bandersnatch) -> None:
    (bs.directory / "status").unlink()
    (bs.directory / "status").mkdir()
    with pytest.raises(AdoptError, match="cannot read"):
        read_tree(bs.directory, hash_index=False)


def test_a_legacy_directory_gives_way_to_the_normalized_one(bs: Bandersnatch) -> None:
    bs.project("Beta.Pkg", dists("beta"))
    for legacy in ["Beta.Pkg", "BETA_PKG"]:
        (bs.web / "simple" / legacy).mkdir()
    tree = read_tree(bs.directory, hash_index=False)
    assert tree.projects == ((NormalizedName("beta-pkg"), "beta-pkg"),)


def test_a_directory_without_pages_has_no_projects(tmp_path: Path) -> None:
    tree = read_tree(tmp_path, hash_index=False)
    assert (tree.projects, tree.status_serial, tree.todo, tree.generation) == ((), None, None, None)


def test_lost_filters_are_refused_unless_a_config_exists(bs: Bandersnatch, tmp_path: Path) -> None:
    conf = bs.conf("[plugins]\nenabled = versions_count_project_metadata\n")
    plan = app.plan_adoption(tmp_path / "mirror.conf", conf)
    with pytest.raises(AdoptError, match="versions_count_project_metadata"):
        app.adoption_config(plan)
    assert not (tmp_path / "mirror.conf").exists()
    (tmp_path / "mirror.conf").write_text(f"[mirror]\ndirectory = {bs.directory}\n")
    plan = app.plan_adoption(tmp_path / "mirror.conf", conf)
    assert app.adoption_config(plan).directory == bs.directory


def test_the_config_must_name_bandersnatch_directory_on_disk(
    bs: Bandersnatch, tmp_path: Path
) -> None:
    (tmp_path / "mirror.conf").write_text(f"[mirror]\ndirectory = {tmp_path / 'elsewhere'}\n")
    with pytest.raises(AdoptError, match="in place"):
        app.adoption_config(app.plan_adoption(tmp_path / "mirror.conf", bs.conf()))
    (tmp_path / "mirror.conf").write_text(
        f"[mirror]\ndirectory = {bs.directory}\n[storage]\nbackend = s3\nbucket = mirror\n"
    )
    with pytest.raises(AdoptError, match="S3"):
        app.adoption_config(app.plan_adoption(tmp_path / "mirror.conf", bs.conf()))


def test_unreadable_inputs_are_config_errors(bs: Bandersnatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        app.plan_adoption(tmp_path / "mirror.conf", tmp_path / "missing.conf")
    plan = app.plan_adoption(tmp_path / "no" / "such" / "mirror.conf", bs.conf())
    with pytest.raises(ConfigError, match="cannot write"):
        app.adoption_config(plan)


def test_cli_dry_run_prints_and_changes_nothing(
    bs: Bandersnatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bs.project("alpha", dists("alpha"))
    (bs.directory / "todo").write_text("120\nalpha 110\n")
    conf = tmp_path / "mirror.conf"
    assert main(["adopt", "-c", str(conf), str(bs.conf()), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"directory = {bs.directory}" in out
    assert "serial 100, 1 project page(s), an interrupted run's todo of 1" in out
    assert not conf.exists()
    conf.write_text(f"[mirror]\ndirectory = {bs.directory}\n")
    assert main(["adopt", "-c", str(conf), str(bs.conf()), "--dry-run"]) == 0
    assert "exists: adopt would use it" in capsys.readouterr().out
    assert not (bs.directory / "mirror.db").exists()


def test_cli_adopt_warns_about_what_it_cannot_carry(
    bs: Bandersnatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bs.project("alpha", dists("alpha"))
    conf = tmp_path / "mirror.conf"
    assert main(["adopt", "-c", str(conf), str(bs.conf("verifiers = 3\n")), "--trust-sizes"]) == 0
    err = capsys.readouterr().err
    assert "not carried over: [mirror] verifiers = 3" in err
    assert "adopted 1 project(s): 2 file(s)" in err


def test_reconciled_adds_what_the_listing_says_the_adopted_mirror_lacks() -> None:
    found = Changes(
        projects={NormalizedName("new"): Serial(90)},
        serial=Serial(90),
        display_names={NormalizedName("new"): "New"},
    )
    listed = {
        NormalizedName("new"): Serial(80),
        NormalizedName("stale"): Serial(70),
        NormalizedName("fresh"): Serial(60),
        NormalizedName("unheld"): Serial(95),
    }
    held = {
        NormalizedName("stale"): Serial(50),
        NormalizedName("fresh"): Serial(60),
        NormalizedName("gone"): Serial(40),
    }
    result = reconciled(found, listed, held, {NormalizedName("unheld"): "Unheld"})
    assert result.projects == {"new": 90, "stale": 70, "unheld": 95, "gone": 0}
    assert result.serial == 95
    assert result.display_names == {"new": "New", "unheld": "Unheld"}


def test_pages_parse_as_bandersnatch_writes_them() -> None:
    name = NormalizedName("alpha")
    sha = "a" * 64
    href = f"../../packages/aa/bb/cc/alpha-1.0.tar.gz#sha256={sha}"
    link = f'<a href="{href}" data-yanked="bad">alpha-1.0.tar.gz</a>'
    detail = parse_html_page(f"<title>Links for A&amp;B</title>{link}<!--SERIAL 12-->", name=name)
    (dist,) = detail.files
    assert (dist.yanked, dist.yanked_reason, dist.size, detail.serial) == (True, "bad", -1, 12)
    assert page_title("<title>Links for A&amp;B</title>") == "A&B"
    assert page_title("<p>no title</p>") is None
    assert parse_html_page("<html></html>", name=name).serial == 0
    page = {
        "name": "alpha",
        "meta": {"_last-serial": 7},
        "files": [
            {
                "filename": "alpha-1.0.tar.gz",
                "url": "../../packages/aa/bb/cc/alpha-1.0.tar.gz",
                "hashes": {"sha256": sha},
                "size": 3,
            }
        ],
    }
    assert parse_json_page(json.dumps(page), name=name).serial == 7
    assert parse_json_page(json.dumps({**page, "meta": {}}), name=name).serial == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", "not a PEP 691 project page"),
        ('{"name": "alpha", "files": ["x"]}', "files"),
        ('{"name": "other", "files": []}', "name"),
    ],
)
def test_bad_json_pages_are_adopt_errors(text: str, words: str) -> None:
    with pytest.raises(AdoptError, match=words):
        parse_json_page(text, name=NormalizedName("alpha"))


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ('<a href="../../packages/aa/bb/cc/x.tar.gz#md5=abc">x.tar.gz</a>', "no sha256"),
        (f'<a href="../../elsewhere/x.tar.gz#sha256={"a" * 64}">x.tar.gz</a>', "packages"),
    ],
)
def test_bad_html_links_are_adopt_errors(link: str, words: str) -> None:
    with pytest.raises(AdoptError, match=words):
        parse_html_page(link, name=NormalizedName("alpha"))


def test_todo_names_keep_their_spelling() -> None:
    todo = parse_todo("12\nBeta.Pkg 9\n")
    assert (todo.target_serial, todo.projects) == (12, {"Beta.Pkg": 9})
