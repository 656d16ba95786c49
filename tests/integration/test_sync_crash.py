"""A sync killed at any point, then a re-sync, equals a clean sync into a fresh cache.

The kill -9 runs use a real subprocess (sometimes with the process pool) on a generated
bucket of 300 files / 6,000 events signed with the keys of keys.json; the crash-point runs
raise inside a sync at chosen places (between batches, while recording file changes, while
deciding keys), which is what a kill there leaves behind: committed batches, and a rolled
back final transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    PROJECT,
    Author,
    events_set,
    findings_list,
    generated_bucket,
    query,
    trust_map,
    write_events,
)

from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from bucketchat.sync import keys as sync_keys
from bucketchat.sync import pull as pull_module
from bucketchat.sync import store as store_module

SYNC_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import bucketchat.sync.pull as pull_module
    from bucketchat.session import sync_bucket
    from bucketchat.storage import LocalBucket

    if __name__ == "__main__":
        bucket, cache, workers, batch_files = sys.argv[1:5]
        pull_module.BATCH_FILES = pull_module.LOCAL_COMMIT_FILES = int(batch_files)
        print("started", flush=True)
        report = sync_bucket(LocalBucket(Path(bucket)), Path(cache), workers=int(workers))
        print("done", report.files_ingested, flush=True)
    """
)


def snapshot(cache: Path) -> tuple[Any, ...]:
    return events_set(cache), findings_list(cache), trust_map(cache)


@pytest.fixture(scope="module")
def big_bucket(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Any, ...]]:
    """The generated bucket and the snapshot of a clean sync of it into a fresh cache."""
    base = tmp_path_factory.mktemp("crash")
    root = base / "bucket"
    files = generated_bucket(root, files=300, events_per_file=20)
    assert len(files) == 300
    clean = base / "clean.duckdb"
    report = sync_bucket(LocalBucket(root), clean, workers=1)
    assert report.events_ingested == 6000
    return root, snapshot(clean)


def _killed_sync(
    script: Path, root: Path, cache: Path, workers: int, batch_files: int, delay: float
) -> bool:
    """Start a sync, SIGKILL its whole process group after ``delay`` s; True if killed
    before it finished by itself."""
    process = subprocess.Popen(
        [sys.executable, str(script), str(root), str(cache), str(workers), str(batch_files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT,
        start_new_session=True,  # its own group: the pool workers die with it
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"started"
        time.sleep(delay)
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return not finished
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _presync(root: Path, cache: Path, held_back: tuple[str, ...]) -> None:
    """Sync everything but the rooms in ``held_back`` (a view of the bucket by hard links)."""
    partial = cache.parent / "partial"
    for path in root.rglob("*.jsonl"):
        if path.relative_to(root).parts[1] in held_back:
            continue
        target = partial / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    sync_bucket(LocalBucket(partial), cache, workers=1)
    shutil.rmtree(partial)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_kill_9_then_resync_equals_a_clean_sync(
    seed: int, big_bucket: tuple[Path, tuple[Any, ...]], tmp_path: Path
):
    """Seeds 0-2 start from an empty cache; 3-5 from one that already holds room alpha, so
    the killed sync brings new rooms and keys to a cache with key decisions of its own."""
    root, clean = big_bucket
    script = tmp_path / "sync_script.py"
    script.write_text(SYNC_SCRIPT)
    rng = random.Random(seed)
    workers = 2 if seed % 2 else 1
    batch_files = rng.choice([400, 30, 7])
    presynced = seed >= 3
    delay = rng.uniform(0.05, 1.0 if presynced else 1.8)
    rounds = rng.choice([1, 2])  # sometimes a second kill of the resumed sync

    for _ in range(5):  # a machine fast enough to finish first gets a shorter delay
        cache = tmp_path / "killed.duckdb"
        for leftover in tmp_path.glob("killed.duckdb*"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        if presynced:
            _presync(root, cache, held_back=("beta", "gamma"))
        killed = [
            _killed_sync(script, root, cache, workers, batch_files, delay) for _ in range(rounds)
        ]
        if killed[0]:
            break
        delay /= 3
    else:
        pytest.fail("every sync finished before its kill: the test proved nothing")

    report = sync_bucket(LocalBucket(root), cache, workers=workers)
    ingested = query(cache, "SELECT count(*) FROM files WHERE state = 'ingested'")[0][0]
    assert ingested == 300
    assert report.files_ingested <= 300
    after = snapshot(cache)
    assert after[0] == clean[0]  # (event_hash, signature, event_id, room_id)
    assert after[1] == clean[1]  # findings
    assert after[2] == clean[2]  # trust of every event
    # a resumed sync never counts an event twice: what it ingests is what was missing
    assert query(cache, "SELECT count(*) FROM duplicate_lines")[0][0] == 0


# ---------------------------------------------------------------- chosen crash points


class Crash(BaseException):
    """Stands for a kill: raised inside the sync, never caught by it."""


def _carol() -> Author:
    return Author("carol@example.com", hashlib.sha256(b"carol's device").digest())


def _two_stage_bucket(root: Path) -> tuple[list[Path], list[Path]]:
    """A first part (rooms alpha and beta, alice and bob) and a second part that brings a
    new sender's key to alpha and a new room gamma."""
    alice, bob, carol = Author.of(ALICE), Author.of(BOB), _carol()
    first, second = [], []
    at = BASE_MS
    for room in ("alpha", "beta"):
        for author in (alice, bob):
            events = [author.join(room, at := at + 10)]
            events += [author.message(room, at := at + 10, f"hi {i}") for i in range(5)]
            first.append(write_events(root, room, events, author.client_id))
    events = [carol.join("alpha", at := at + 10)]
    events += [carol.message("alpha", at := at + 10, f"carol {i}") for i in range(5)]
    second.append(write_events(root, "alpha", events, carol.client_id))
    for author in (alice, bob):
        events = [author.join("gamma", at := at + 10)]
        events += [author.message("gamma", at := at + 10, f"gamma {i}") for i in range(5)]
        second.append(write_events(root, "gamma", events, author.client_id))
    # a room's metadata is a file change the sync records with the last files it stores
    metadata = root / "rooms" / "gamma" / "metadata.json"
    metadata.write_text(json.dumps({"room_id": "gamma", "name": "Gamma", "version": "1.0"}))
    second.append(metadata)
    return first, second


def _hide(paths: list[Path], root: Path, away: Path) -> None:
    for path in paths:
        target = away / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def _unhide(paths: list[Path], root: Path, away: Path) -> None:
    for path in paths:
        shutil.move(away / path.relative_to(root), path)


def _arm(point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if point == "second_batch":
        monkeypatch.setattr(pull_module, "BATCH_FILES", 1)
        monkeypatch.setattr(pull_module, "LOCAL_COMMIT_FILES", 1)
        real = store_module.write_batch
        calls = []

        def write_batch(*args: Any, **kwargs: Any) -> int:
            calls.append(1)
            if len(calls) == 2:
                raise Crash("killed before the second batch")
            return real(*args, **kwargs)

        monkeypatch.setattr(store_module, "write_batch", write_batch)
    elif point == "record_changes":

        def record(*args: Any, **kwargs: Any) -> None:
            raise Crash("killed while recording file changes")

        monkeypatch.setattr(pull_module, "record_changes", record)
    else:

        def refresh(*args: Any, **kwargs: Any) -> None:
            raise Crash("killed while deciding keys")

        monkeypatch.setattr(sync_keys, "refresh_room_keys", refresh)


@pytest.mark.parametrize("point", ["second_batch", "record_changes", "refresh_keys"])
@pytest.mark.parametrize("start", ["fresh", "presynced"])
def test_crash_at_a_chosen_point_then_resync_equals_a_clean_sync(
    point: str, start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root, away = tmp_path / "bucket", tmp_path / "away"
    _, second = _two_stage_bucket(root)
    clean = tmp_path / "clean.duckdb"
    sync_bucket(LocalBucket(root), clean)
    expected = snapshot(clean)
    assert "unverified" not in expected[2].values()

    cache = tmp_path / "cache.duckdb"
    if start == "presynced":
        _hide(second, root, away)
        sync_bucket(LocalBucket(root), cache)
        _unhide(second, root, away)

    with monkeypatch.context() as patch:
        _arm(point, patch)
        with pytest.raises(Crash):
            sync_bucket(LocalBucket(root), cache)

    sync_bucket(LocalBucket(root), cache)
    after = snapshot(cache)
    assert after[0] == expected[0]
    assert after[2] == expected[2]
    assert after[1] == expected[1]
