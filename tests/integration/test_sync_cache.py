"""The cache itself: migration records and their checksums, ``cache migrate``, ``cache
rebuild`` (which keeps the memory of files) and the busy path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from test_sync_support import (
    ALICE,
    FIXTURES,
    PROJECT,
    Author,
    bucketchat,
    error_lines,
    events_set,
    findings_list,
    query,
    trust_map,
    write_events,
)

from bucketchat.cache import open_cache
from bucketchat.errors import MigrationMismatch
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket

MIGRATIONS = sorted((PROJECT / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))


@pytest.fixture
def vector_bucket(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    shutil.copytree(FIXTURES / "bucket", root)
    return root


def test_schema_migrations_record_every_shipped_migration_with_its_sha256(tmp_path: Path):
    db = tmp_path / "cache.duckdb"
    open_cache(db).close()
    rows = query(db, "SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY 1")
    assert len(MIGRATIONS) >= 3
    expected = [
        (int(path.name[:4]), path.stem[5:], hashlib.sha256(path.read_bytes()).hexdigest())
        for path in MIGRATIONS
    ]
    assert [row[:3] for row in rows] == expected
    assert all(row[3] is not None for row in rows)
    open_cache(db).close()  # opening again applies nothing twice
    assert len(query(db, "SELECT * FROM schema_migrations")) == len(MIGRATIONS)


def _tamper_migration(db: Path) -> None:
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE schema_migrations SET sha256 = repeat('0', 64) WHERE version = 1")
    finally:
        con.close()


def test_a_changed_migration_is_refused(vector_bucket: Path, tmp_path: Path):
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), db)
    _tamper_migration(db)

    with pytest.raises(MigrationMismatch, match="0001"):
        open_cache(db)

    for command in (
        ["sync", "--bucket", str(vector_bucket)],
        ["cache", "migrate"],
        ["cache", "rebuild", "--bucket", str(vector_bucket)],
    ):
        ran = bucketchat(*command, "--db", str(db))
        assert ran.code == 1, (command, ran.err)
        lines = error_lines(ran.err)
        assert len(lines) == 1, (command, ran.err)
        assert "migration 0001" in lines[0]
        assert "Traceback" not in ran.err
        assert ran.out == ""
    # read-only commands must refuse too
    for command in (["sql", "SELECT count(*) FROM events"], ["audit"], ["cache", "info"]):
        ran = bucketchat(*command, "--db", str(db))
        assert ran.code == 1, (command, ran.err)
        assert len(error_lines(ran.err)) == 1, (command, ran.err)
        assert "Traceback" not in ran.err


def test_a_changed_migration_is_refused_by_read_only_commands(vector_bucket: Path, tmp_path: Path):
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), db)
    _tamper_migration(db)
    raised: Exception | None = None
    try:
        open_cache(db, read_only=True).close()
    except Exception as exc:
        raised = exc
    assert isinstance(raised, MigrationMismatch), repr(raised)
    assert "0001" in str(raised)
    for command in (["sql", "SELECT count(*) FROM events"], ["audit"], ["cache", "info"]):
        ran = bucketchat(*command, "--db", str(db))
        assert ran.code == 1, (command, ran.err)
        lines = error_lines(ran.err)
        assert len(lines) == 1, (command, ran.err)
        assert "migration 0001" in lines[0], (command, lines[0])


def test_cache_migrate_dry_run_then_migrate(tmp_path: Path):
    db = tmp_path / "new.duckdb"
    ran = bucketchat("cache", "migrate", "--dry-run", "--db", str(db))
    assert ran.code == 0, ran.err
    names = [path.stem for path in MIGRATIONS]
    assert [line.strip() for line in ran.out.splitlines()] == [f"would apply {n}" for n in names]
    tables = query(db, "SELECT table_name FROM duckdb_tables()")
    assert ("event_rows",) not in tables  # a dry run applies nothing
    if ("schema_migrations",) in tables:
        assert query(db, "SELECT count(*) FROM schema_migrations") == [(0,)]

    ran = bucketchat("cache", "migrate", "--db", str(db))
    assert ran.code == 0, ran.err
    assert [line.strip() for line in ran.out.splitlines()] == [f"applied {n}" for n in names]
    assert len(query(db, "SELECT * FROM schema_migrations")) == len(MIGRATIONS)

    for extra in ([], ["--dry-run"]):
        ran = bucketchat("cache", "migrate", *extra, "--db", str(db))
        assert ran.code == 0, ran.err
        assert ran.out.strip() == "the cache is up to date"


def test_a_cache_filled_before_the_column_compression_migration_keeps_every_row(
    vector_bucket: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Migration 0009 copies event_rows and timeline_rows into tables that name their
    columns' compression: every row and value stays, the views read the new tables, and
    the next sync carries on with the sequence where it was."""
    from bucketchat.cache import migrations

    db = tmp_path / "cache.duckdb"
    shipped = migrations.shipped_migrations()
    assert shipped[-1].version == 9 and shipped[-1].name == "column_compression"
    monkeypatch.setattr(migrations, "shipped_migrations", lambda folder=None: shipped[:-1])
    alice = Author.of(ALICE)
    now = int(time.time() * 1000)
    write_events(
        vector_bucket,
        "compressed",
        [alice.join("compressed", now - 60_000), alice.message("compressed", now - 50_000, "x")],
        alice.client_id,
    )
    sync_bucket(LocalBucket(vector_bucket), db)
    assert query(db, "SELECT max(version) FROM schema_migrations") == [(8,)]
    everything = "SELECT * FROM {} ORDER BY seq"
    before = [query(db, everything.format(table)) for table in ("event_rows", "timeline_rows")]
    views_before = trust_map(db), findings_list(db)
    assert len(before[0]) >= 16 and len(before[1]) >= 8

    monkeypatch.undo()
    open_cache(db).close()
    assert query(db, "SELECT max(version) FROM schema_migrations") == [(9,)]
    after = [query(db, everything.format(table)) for table in ("event_rows", "timeline_rows")]
    assert after == before
    assert (trust_map(db), findings_list(db)) == views_before

    write_events(
        vector_bucket,
        "compressed",
        [alice.message("compressed", now - 40_000, "after the migration")],
        "later",
    )
    sync_bucket(LocalBucket(vector_bucket), db)
    rows = query(db, "SELECT seq, body FROM event_rows WHERE room_id = 'compressed' ORDER BY seq")
    assert rows[-1][1] == "after the migration"
    assert rows[-1][0] > max(row[0] for row in before[0])
    shown = query(db, "SELECT body FROM timeline WHERE room_id = 'compressed' AND body IS NOT NULL")
    assert ("after the migration",) in shown


def test_cache_rebuild_gives_the_same_events_and_keeps_the_memory_of_files(
    vector_bucket: Path, tmp_path: Path
):
    db = tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    now = int(time.time() * 1000)
    early = write_events(
        vector_bucket,
        "memory",
        [alice.join("memory", now - 3_600_000), alice.message("memory", now - 3_590_000, "x")],
        alice.client_id,
    )
    doomed = write_events(
        vector_bucket, "memory", [alice.message("memory", now - 3_500_000, "soon gone")], "z"
    )
    changed = write_events(
        vector_bucket, "memory", [alice.message("memory", now - 3_400_000, "to be changed")], "y"
    )
    sync = ["sync", "--bucket", str(vector_bucket), "--db", str(db)]
    assert bucketchat(*sync).code == 0
    # this file was first seen two hours ago: its events were an hour "in the future" then
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "UPDATE files SET first_seen_at = first_seen_at - INTERVAL 2 HOUR WHERE path = ?",
            [early.relative_to(vector_bucket).as_posix()],
        )
    finally:
        con.close()
    doomed_line = doomed.read_bytes()
    changed_id = json.loads(changed.read_bytes())["event_id"]
    doomed.unlink()
    changed.write_bytes(changed.read_bytes().replace(b"to be changed", b"to be CHANGED"))
    assert bucketchat(*sync).code == 0
    before = events_set(db), trust_map(db), findings_list(db)
    kinds_before = dict(query(db, "SELECT kind, count(*) FROM findings GROUP BY kind"))
    assert kinds_before["file_deleted"] == 1
    assert kinds_before["file_mutated"] == 1
    assert kinds_before["future_timestamp"] == 2

    ran = bucketchat("cache", "rebuild", "--json", "--bucket", str(vector_bucket), "--db", str(db))
    assert ran.code == 0, ran.err
    kinds_after = dict(query(db, "SELECT kind, count(*) FROM findings GROUP BY kind"))
    # deleted, mutated and future stay detected; the changed file is read again as it is
    # now, so its forged line is what the cache holds (a bad signature) after the rebuild
    assert kinds_after == {**kinds_before, "bad_signature": 1}
    deleted = query(db, "SELECT file FROM findings WHERE kind = 'file_deleted'")
    assert deleted == [(doomed.relative_to(vector_bucket).as_posix(),)]
    forged = query(db, "SELECT file FROM findings WHERE kind = 'bad_signature'")
    assert forged == [(changed.relative_to(vector_bucket).as_posix(),)]

    after = events_set(db)
    lost = before[0] - after
    assert {e[2] for e in lost} == {
        json.loads(doomed_line)["event_id"],
        changed_id,
    }
    assert {e for e in before[0] if not e[2].startswith("memory::")} == {
        e for e in after if not e[2].startswith("memory::")
    }
    vectors_rooms = "SELECT room_id, trust, count(*) FROM events WHERE room_id <> 'memory' "
    assert query(db, vectors_rooms + "GROUP BY ALL ORDER BY ALL") == [
        ("faults", "tofu", 5),
        ("vectors", "tofu", 9),
    ]


def test_cache_rebuild_of_an_unchanged_bucket_is_identical(vector_bucket: Path, tmp_path: Path):
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), db)
    before = events_set(db), trust_map(db), findings_list(db)
    ran = bucketchat("cache", "rebuild", "--json", "--bucket", str(vector_bucket), "--db", str(db))
    assert ran.code == 0, ran.err
    assert (events_set(db), trust_map(db), findings_list(db)) == before


HOLDER = """
import sys, time
import duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SELECT count(*) FROM event_rows").fetchall()
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.slow
def test_a_command_exits_3_while_another_process_holds_the_cache(
    vector_bucket: Path, tmp_path: Path
):
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), db)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), "40"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        commands = {
            "sql": ["sql", "SELECT 1", "--db", str(db)],
            "sync": ["sync", "--bucket", str(vector_bucket), "--db", str(db)],
            "audit": ["audit", "--db", str(db)],
        }
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "bucketchat", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=PROJECT,
                env=dict(os.environ),
            )
            for name, args in commands.items()
        }
        started = time.monotonic()
        for name, process in running.items():
            out, err = process.communicate(timeout=60)
            assert process.returncode == 3, (name, err)
            lines = error_lines(err)
            assert len(lines) == 1, (name, err)
            assert "the cache is busy" in lines[0]
            assert "Traceback" not in err
            assert out == ""
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    # once it lets go, the same commands work
    assert bucketchat("sql", "SELECT 1", "--db", str(db)).code == 0
