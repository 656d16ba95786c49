"""``sync --watch`` on a local bucket: new files land within about two seconds, readers
work meanwhile, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sync_support import (
    ALICE,
    BOB,
    PROJECT,
    Author,
    bucketchat,
    seed_of,
    write_events,
)

from bucketchat.protocol.signing import SigningKey
from bucketchat.session import Session
from bucketchat.storage import LocalBucket


def count_events(db: Path, room: str) -> int | None:
    sql = f"SELECT count(*) AS n FROM events WHERE room_id = '{room}'"  # noqa: S608
    ran = bucketchat("sql", "--db", str(db), "--format", "json", sql)
    if ran.code != 0:
        return None
    return int(json.loads(ran.out)[0]["n"])


def wait_for(db: Path, room: str, expected: int, budget: float) -> float | None:
    """Seconds until ``room`` holds ``expected`` events, or None after ``budget``."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        if count_events(db, room) == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


@pytest.mark.slow
def test_watch_ingests_new_files_quickly_and_stops_on_ctrl_c(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "watch.duckdb"
    bob = Author.of(BOB)
    write_events(root, "lobby", [bob.join("lobby", 1_767_225_600_000)], bob.client_id)

    command = [sys.executable, "-m", "bucketchat", "sync", "--watch"]
    watcher = subprocess.Popen(
        [*command, "--bucket", str(root), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=PROJECT,
        env=dict(os.environ),
    )
    try:
        assert wait_for(db, "lobby", 1, budget=20) is not None, "the first sync never landed"

        writer = Session(
            LocalBucket(root),
            tmp_path / "writer.duckdb",
            user=ALICE,
            key=SigningKey(seed_of(ALICE)),
        )
        sent = writer.write("lobby", "m.room.message", {"body": "ping", "msgtype": "m.text"})
        written_at = time.monotonic()
        seconds = wait_for(db, "lobby", 3, budget=6)  # alice's join and her message
        assert seconds is not None, "the new file was not ingested"
        assert time.monotonic() - written_at < 3.0, f"ingested after {seconds:.1f}s"

        ran = bucketchat(
            "sql", "--db", str(db), "--format", "json",
            "SELECT event_id, trust FROM events WHERE sender_id = 'alice@example.com' "
            "AND type = 'm.room.message'",
        )  # fmt: skip
        assert ran.code == 0, ran.err
        assert json.loads(ran.out) == [{"event_id": sent.event_id, "trust": "tofu"}]

        if bucketchat("log", "--help").code == 0:  # once the query layer has `log`
            ran = bucketchat("log", "lobby", "--db", str(db), "--json")
            assert ran.code == 0, ran.err
            assert sent.event_id in {item["event_id"] for item in json.loads(ran.out)}

        assert watcher.poll() is None, "the watcher died"
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=15)
        assert watcher.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate(timeout=10)
    # it let go of the cache: a writer can open it at once
    assert bucketchat("sync", "--bucket", str(root), "--db", str(db)).code == 0
