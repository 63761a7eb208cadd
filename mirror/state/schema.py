"""The state store's schema: every table, by the version that added it.

Each version's DDL is kept as it was released, so that a database written by any
earlier mirror migrates to :data:`SCHEMA_VERSION` step by step (see
:meth:`mirror.state.core.StoreCore.open`).
"""

from __future__ import annotations

from collections.abc import Mapping

SCHEMA_VERSION = 8
"""The schema version this code writes; older stores are migrated, newer ones refused."""

_DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE projects (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    serial       INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active',
    file_count   INTEGER NOT NULL,
    total_bytes  INTEGER NOT NULL
) WITHOUT ROWID;

-- No foreign key to projects: files are recorded as they land, before the project's
-- first commit creates its row.
CREATE TABLE files (
    path            TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    filename        TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    metadata_sha256 TEXT,
    metadata_size   INTEGER
);
CREATE INDEX files_project ON files (project);

CREATE TABLE todo (
    name         TEXT PRIMARY KEY,
    serial       INTEGER NOT NULL,
    display_name TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT
) WITHOUT ROWID;
CREATE INDEX todo_next_attempt ON todo (next_attempt);

CREATE TABLE garbage (
    path TEXT PRIMARY KEY
) WITHOUT ROWID;
"""
"""Schema version 1, the whole schema in one place."""

_DDL_2 = """
-- Running totals of the committed projects, kept in the transactions that change
-- project rows, so that size and counts are one indexed read on any mirror size.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) SELECT 'projects', count(*) FROM projects;
INSERT INTO counters (name, value) SELECT 'files', coalesce(sum(file_count), 0) FROM projects;
INSERT INTO counters (name, value) SELECT 'bytes', coalesce(sum(total_bytes), 0) FROM projects;
INSERT INTO counters (name, value) VALUES ('downloaded_bytes', 0);

-- One row per finished sync run: its result and a sample of the mirror's size.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    started          REAL NOT NULL,
    finished         REAL NOT NULL,
    ok               INTEGER NOT NULL,
    projects_synced  INTEGER NOT NULL,
    projects_removed INTEGER NOT NULL,
    projects_failed  INTEGER NOT NULL,
    files_downloaded INTEGER NOT NULL,
    bytes_downloaded INTEGER NOT NULL,
    files_deleted    INTEGER NOT NULL,
    serial           INTEGER,
    upstream_serial  INTEGER,
    projects         INTEGER NOT NULL,
    files            INTEGER NOT NULL,
    bytes            INTEGER NOT NULL
);
"""
"""Schema version 2: incremental totals and the run history (data of version 1 kept)."""

_DDL_3 = """
-- The mirror's own journal: one row per change a downstream mirror must follow (a
-- project committed with something new, a project removed), appended in the
-- transaction of that change. The serial is never below the upstream serial of what
-- it records (max(previous + 1, that serial)), so a page's own serial never exceeds
-- the serial a follower was told about it. Rows older than the retention window are
-- pruned, except each committed project's newest.
CREATE TABLE journal (
    serial       INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    action       TEXT NOT NULL,
    time         REAL NOT NULL
);
CREATE INDEX journal_name ON journal (name, serial);
-- The projects already held get a row each, above every serial they carry.
INSERT INTO journal (serial, name, display_name, action, time)
    SELECT (SELECT coalesce(max(serial), 0) FROM projects)
        + row_number() OVER (ORDER BY serial, name),
        name, display_name, 'create', CAST(strftime('%s', 'now') AS REAL)
    FROM projects ORDER BY serial, name
"""
"""Schema version 3: the mirror's journal, what ``mirror serve``'s XML-RPC answers from."""

_DDL_4 = """
-- File history: one row per file path the mirror ever published (or holds back),
-- written only when a commit adds, changes or drops a file. What a snapshot view
-- renders. yanked is NULL when not yanked, else the reason ('' for none). Times are
-- Unix seconds, upload_time NULL when upstream gave none. A removed file keeps its
-- row with removed_at and removed_serial set.
CREATE TABLE file_history (
    path            TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    filename        TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    metadata_sha256 TEXT,
    requires_python TEXT,
    yanked          TEXT,
    provenance      TEXT,
    upload_time     REAL,
    mirrored_at     REAL NOT NULL,
    mirrored_serial INTEGER NOT NULL,
    removed_at      REAL,
    removed_serial  INTEGER
);
CREATE INDEX file_history_project ON file_history (project);

-- Existing files: first mirrored now (their history starts with this version), at
-- their project's serial, upload time unknown until the project is synced again.
INSERT INTO file_history (path, project, filename, size, sha256, metadata_sha256,
    mirrored_at, mirrored_serial)
SELECT f.path, f.project, f.filename, f.size, f.sha256, f.metadata_sha256,
    (julianday('now') - 2440587.5) * 86400.0, coalesce(p.serial, 0)
FROM files AS f LEFT JOIN projects AS p ON p.name = f.project;

-- A garbage path is unlinked only from not_before on (Unix time): removed files are
-- kept on disk for keep-removed so that past views still serve them.
ALTER TABLE garbage ADD COLUMN not_before REAL NOT NULL DEFAULT 0;

-- Projects with files downloaded but held back by the cooldown: the earliest upload
-- time among them, so that a run finds the projects whose held files became due with
-- one indexed read.
CREATE TABLE held (
    project         TEXT PRIMARY KEY,
    earliest_upload REAL NOT NULL,
    files           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX held_earliest_upload ON held (earliest_upload);
"""
"""Schema version 4: the file history, retained garbage and the cooldown's held files."""

_DDL_5 = """
-- Projects deleted with `mirror delete` and kept out of the mirror until the operator
-- lifts the exclusion (`mirror delete --undo`): no change upstream queues them again.
-- since is Unix time, reason what the operator gave (or the default).
CREATE TABLE excluded (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    since        REAL NOT NULL,
    reason       TEXT NOT NULL
) WITHOUT ROWID;
"""
"""Schema version 5: the projects ``mirror delete`` keeps out."""

_DDL_6 = """
-- Upstream confirmed the project's removal (its changelog's newest row removes it, or
-- the full listing no longer has it): only then does a 404 remove the project. Items
-- queued before this version count as unconfirmed until a listing confirms them.
ALTER TABLE todo ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;
"""
"""Schema version 6: a todo item knows whether upstream confirmed a removal."""

_DDL_7 = """
-- A file's PEP 740 provenance copy (<path>.provenance), set together when it is on
-- disk and verified, both NULL otherwise (as the .metadata sidecar's pair).
ALTER TABLE files ADD COLUMN provenance_sha256 TEXT;
ALTER TABLE files ADD COLUMN provenance_size INTEGER;
-- The history's provenance now means "the mirror holds a copy": none did before.
UPDATE file_history SET provenance = NULL
"""
"""Schema version 7: each file's provenance copy."""

_DDL_8 = """
-- What the mirror last saw of each project upstream lists, when it follows upstream
-- through the PEP 691 root index (upstream-api = simple): the root's _last-serial, or
-- the page's X-PyPI-Last-Serial and ETag. A project whose page no longer matches is
-- queued. Rows are written once the changes they describe are queued.
CREATE TABLE page_validators (
    name   TEXT PRIMARY KEY,
    etag   TEXT,
    serial INTEGER
) WITHOUT ROWID;
"""
"""Schema version 8: the page validators of the root-index follower."""

MIGRATIONS: Mapping[int, str] = {
    1: _DDL,
    2: _DDL_2,
    3: _DDL_3,
    4: _DDL_4,
    5: _DDL_5,
    6: _DDL_6,
    7: _DDL_7,
    8: _DDL_8,
}
"""The statements that bring a database of version N - 1 to version N, by N (an empty
database is version 0). The DDL text is what existing stores were created with: a
change here is a new version and a new migration, never an edit."""
