"""Worker results spooled to Arrow files beside the cache (sync.pull's pool path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_sync_support import events_set, generated_bucket, trust_map

from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from bucketchat.sync import reader
from bucketchat.sync import workers as workers_module
from bucketchat.sync.workers import SPOOL_FOLDER


def test_a_pooled_sync_leaves_no_spool_and_clears_that_of_a_dead_sync(tmp_path: Path, monkeypatch):
    root = tmp_path / "bucket"
    # files big enough to be spooled, and small ones whose rows come back through the pipe
    generated_bucket(root, files=40, events_per_file=reader.SPOOL_ROWS + 6)
    generated_bucket(root, files=30, events_per_file=5, rooms=("delta",), seed=8)
    monkeypatch.setattr(workers_module, "POOL_THRESHOLD_BYTES", 0)  # use the workers however small
    spooled = []
    real_load = reader.load_spooled

    def load_spooled(result: reader.FileResult) -> reader.FileResult:
        spooled.append(result.events_file is not None)
        return real_load(result)

    monkeypatch.setattr(reader, "load_spooled", load_spooled)

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / SPOOL_FOLDER / f"{dead.stdout.strip()}-left-by-a-killed-sync"
    stale.mkdir(parents=True)
    (stale / "1-0.arrow").write_bytes(b"half written")

    pooled, single = tmp_path / "pooled.duckdb", tmp_path / "single.duckdb"
    report = sync_bucket(LocalBucket(root), pooled, workers=2)
    assert report.events_ingested == 40 * (reader.SPOOL_ROWS + 6) + 30 * 5
    assert spooled.count(True) == 40 and spooled.count(False) == 30
    # the workers' fork server is gone too: it would hold ~86 MiB through the index build
    from multiprocessing import forkserver

    assert forkserver._forkserver._forkserver_pid is None
    assert not (tmp_path / SPOOL_FOLDER).exists()
    sync_bucket(LocalBucket(root), single, workers=1)
    assert events_set(pooled) == events_set(single)
    assert trust_map(pooled) == trust_map(single)


def test_a_group_of_files_sent_to_a_worker_verifies_with_the_keys_it_publishes(tmp_path: Path):
    """The first file of each sender in a room publishes the key; the files after it in
    the same group are verified with that key at once, not later in the main process."""
    root = tmp_path / "bucket"
    paths = generated_bucket(root, files=12, events_per_file=4, rooms=("alpha",))
    files = [(str(path.relative_to(root)), None, str(path)) for path in paths]
    results = reader.read_files(None, "alpha", {}, sorted(files))
    assert [len(result.rows or ()) for result in results] == [4] * 12
    assert all(row[12] is not None for result in results for row in result.rows or ())
