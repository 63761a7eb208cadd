"""The state store's run history: one row per finished sync run, and the running
total of bytes the runs downloaded."""

from __future__ import annotations

from mirror.models import Serial
from mirror.state.core import StoreCore
from mirror.state.records import RunRecord, Totals

_RUN_COLUMNS = (
    "started, finished, ok, projects_synced, projects_removed, projects_failed,"
    " files_downloaded, bytes_downloaded, files_deleted, serial, upstream_serial,"
    " projects, files, bytes"
)

# started, finished, ok, 6 run counts, serial, upstream serial, 3 totals.
_RunRow = tuple[
    float, float, int, int, int, int, int, int, int, int | None, int | None, int, int, int
]


class RunHistory(StoreCore):
    """The ``runs`` table, and the ``downloaded_bytes`` counter it feeds."""

    def record_run(self, run: RunRecord) -> None:
        """Append a finished run to the history and add its downloads to the running
        total, in one transaction."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO runs (started, finished, ok, projects_synced, projects_removed,"
                " projects_failed, files_downloaded, bytes_downloaded, files_deleted, serial,"
                " upstream_serial, projects, files, bytes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.started,
                    run.finished,
                    int(run.ok),
                    run.projects_synced,
                    run.projects_removed,
                    run.projects_failed,
                    run.files_downloaded,
                    run.bytes_downloaded,
                    run.files_deleted,
                    run.serial,
                    run.upstream_serial,
                    run.totals.projects,
                    run.totals.files,
                    run.totals.bytes,
                ),
            )
            connection.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'downloaded_bytes'",
                (run.bytes_downloaded,),
            )

    def runs(self, *, limit: int | None = None) -> list[RunRecord]:
        """The last ``limit`` runs (all when None), oldest first."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?",  # noqa: S608 (constant)
                (-1 if limit is None else limit,),
            ).fetchall()
        return [_run_record(row) for row in reversed(rows)]

    def last_run(self, *, ok: bool | None = None) -> RunRecord | None:
        """The newest run (the newest successful one with ``ok=True``), or None."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 (constant)
        if ok is not None:
            query += f" WHERE ok = {int(ok)}"
        with self._reading() as connection:
            row = connection.execute(query + " ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _run_record(row)

    def last_upstream_serial(self) -> Serial | None:
        """Upstream's serial as seen by the newest run that asked, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT upstream_serial FROM runs WHERE upstream_serial IS NOT NULL"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else Serial(row[0])

    def downloaded_bytes_total(self) -> int:
        """Bytes downloaded by every recorded run, added up."""
        with self._reading() as connection:
            (total,) = connection.execute(
                "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'downloaded_bytes'"
            ).fetchone()
        return int(total)


def _run_record(row: _RunRow) -> RunRecord:
    (
        started,
        finished,
        ok,
        synced,
        removed,
        failed,
        files_downloaded,
        bytes_downloaded,
        files_deleted,
        serial,
        upstream_serial,
        projects,
        files,
        total_bytes,
    ) = row
    return RunRecord(
        started=started,
        finished=finished,
        ok=bool(ok),
        projects_synced=synced,
        projects_removed=removed,
        projects_failed=failed,
        files_downloaded=files_downloaded,
        bytes_downloaded=bytes_downloaded,
        files_deleted=files_deleted,
        serial=None if serial is None else Serial(serial),
        upstream_serial=None if upstream_serial is None else Serial(upstream_serial),
        totals=Totals(projects=projects, files=files, bytes=total_bytes),
    )
