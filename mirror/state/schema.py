"""The state store's schema: every table, by the version that added it.

Each version's DDL is kept as it was released, so that a database written by any
earlier mirror migrates to :data:`SCHEMA_VERSION` step by step (see
:meth:`mirror.state.core.StoreCore.open`).
"""

from __future__ import annotations

from collections.abc import Mapping

SCHEMA_VERSION = 2
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

MIGRATIONS: Mapping[int, str] = {1: _DDL, 2: _DDL_2}
"""The statements that bring a database of version N - 1 to version N, by N (an empty
database is version 0). The DDL text is what existing stores were created with: a
change here is a new version and a new migration, never an edit."""
