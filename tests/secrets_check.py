"""What the secrets tests check after a run: the markers are in no XCom, no rendered field, no
task log, and in no file that group or others can read; each rank got every value."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys

from tests.integration.dagrun import xcom  # noqa: F401 - (the DB helpers' module)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def stored_values(dag_id: str, run_id: str) -> str:
    """Every XCom value and rendered field of the run, and the run's task logs, as one text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.execute(select(XComModel.key, XComModel.value).where(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id)).all()
        rendered = session.execute(select(RenderedTaskInstanceFields.rendered_fields).where(
            RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id)).all()
    assert xcoms and rendered, "the run stored no XCom / rendered fields: nothing was checked"
    return json.dumps([list(map(str, row)) for row in xcoms]) + json.dumps([str(row[0]) for row in rendered])


# Run in a child process (stdlib only; roots and needles arrive on stdin, never in argv).
_SCAN = r"""
import json, os, stat, sys
job = json.load(sys.stdin)
needles = [n.encode() for n in job["needles"]]
found = []
for root in job["roots"]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except OSError:
                continue
            found += [(path, needle.decode(), mode) for needle in needles if needle in data]
json.dump(found, sys.stdout)
"""


def files_with(roots: list[str], needles: list[str]) -> list[tuple[str, str, int]]:
    """(path, needle, mode) for every file under ``roots`` whose bytes contain a needle.

    The files are read by a child process. This one holds SQLite connections (dag.test's) to the
    metadata DB under these roots, in WAL mode; opening and closing any descriptor of that
    database or its -wal / -shm here would drop this process's POSIX locks on it under those
    connections (SQLite's "How To Corrupt An SQLite Database File", 2.2). A suspected cause of a
    "disk I/O error" in the DB scan that follows (stop 24's CI)."""
    done = subprocess.run([sys.executable, "-c", _SCAN], input=json.dumps({"roots": roots, "needles": needles}),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the file scan failed: {done.stderr[-2000:]}"
    return [(path, needle, mode) for path, needle, mode in json.loads(done.stdout)]


# Where an environment_variables value is, by design: the DAG's own definition (the DAG file's
# source and its serialized form), like any operator argument. Secrets are in no table at all.
DAG_DEFINITION_TABLES = {"dag_code", "serialized_dag"}


def db_tables_with(db_path: str, needle: str) -> set[str]:
    """The metadata DB's tables (SQLite) holding ``needle`` in any column of any row.

    One CI run got a "disk I/O error" from SQLite in the middle of this scan (the run under test
    had ended; the same scan passed in every other run). The suspected cause, this process
    reading the DB's files directly, is gone (files_with); should it come back, the scan, the
    test's own read and not the product's, is made once more on a fresh connection with a
    warning that names SQLite's extended error, and a second failure fails the test with it."""
    import sqlite3
    import warnings

    def scan() -> set[str]:
        found = set()
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            for (table,) in db.execute("select name from sqlite_master where type = 'table'").fetchall():
                for row in db.execute(f'select * from "{table}"'):
                    if any(needle.encode() in (v if isinstance(v, bytes) else str(v).encode()) for v in row if v):
                        found.add(table)
                        break
        return found

    try:
        return scan()
    except sqlite3.OperationalError as exc:
        first = f"{exc} ({getattr(exc, 'sqlite_errorname', '?')}); files: {sorted(os.listdir(os.path.dirname(db_path)))}"
        warnings.warn(f"scanning {db_path} failed once, scanned again: {first}", stacklevel=2)
    try:
        return scan()
    except sqlite3.OperationalError as exc:
        raise AssertionError(f"{db_path} could not be scanned twice: {exc} "
                             f"({getattr(exc, 'sqlite_errorname', '?')}); the first time: {first}") from exc


def check_run(dag_id: str, run_id: str, output: str, markers: dict[str, str], secrets: dict[str, str],
              roots: list[str], ranks: int = 2, db_path: str | None = None) -> None:
    stored = stored_values(dag_id, run_id)
    for name, value in {**markers, **secrets}.items():
        assert value not in stored, f"{name}'s value is in an XCom or a rendered field"
        assert value not in output, f"{name}'s value is in a task log"
        for rank in range(ranks):  # the rank received it (it printed the hash, not the value)
            assert f"rank {rank} {name} sha256 {digest(value)}" in output, output[-3000:]
    for path, needle, mode in files_with(roots, list(secrets.values())):
        raise AssertionError(f"a secret value is in {path} (mode {mode:o})")
    for path, needle, mode in files_with(roots, list(markers.values())):
        if db_path and path.startswith(db_path):
            continue  # the DB and its write-ahead log: checked table by table below
        assert mode & 0o077 == 0, f"{path} holds an environment value and is readable by others (mode {mode:o})"
    if db_path:
        for name, value in secrets.items():
            assert db_tables_with(db_path, value) == set(), f"{name}'s value is in the metadata DB"
        for name, value in markers.items():
            assert db_tables_with(db_path, value) <= DAG_DEFINITION_TABLES, f"{name}'s value is in the metadata DB"
