"""Incremental sync into a big cache: one new message, as `sync --watch` sees each one.

    python benchmarks/bench_incremental.py --bucket /tmp/bench-1m --runs 7 --write

``--bucket`` is a bucket from generate_bucket.py (1,000,000 events in 2,000 files). It is
copied as hard links into a scratch folder (the original is never written), synced once
into a scratch cache (or ``--cache`` is copied, a cache already synced from that bucket),
then each run writes one new log file holding one message of ``user0003`` in
``room-001`` (a room of 100,000 events), continuing that sender's chain, and times
``bucketchat sync --json`` on it through the console script, as a user runs it. No
target is set by the issues; the figure is what a chat on a big cache waits for a
message between the file landing and the timeline and search showing it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results_md  # noqa: E402
from generate_bucket import sender_key, sender_name  # noqa: E402

from bucketchat.protocol import event_hash, signing_bytes  # noqa: E402
from bucketchat.protocol.naming import client_id_for, log_file_path, new_event_id  # noqa: E402
from bucketchat.protocol.signing import fingerprint  # noqa: E402

BUCKETCHAT = [sys.executable, "-m", "bucketchat"]
ROOM, SENDER = "room-001", 3
LAST_OF_SENDER = """
SELECT event_hash, timestamp_ms FROM event_rows WHERE room_id = ? AND sender_id = ?
ORDER BY timestamp_ms DESC LIMIT 1
"""
ROOM_SIZE = "SELECT count(*), max(timestamp_ms) FROM event_rows WHERE room_id = ?"


def write_message(bucket: Path, prev_hash: str, timestamp_ms: int, body: str) -> str:
    """One log file with one chained message; the new event's hash."""
    key = sender_key(SENDER, 0)
    sender_id = sender_name(SENDER)
    event = {
        "event_id": new_event_id(ROOM, timestamp_ms),
        "room_id": ROOM,
        "timestamp_ms": timestamp_ms,
        "sender_id": sender_id,
        "type": "m.room.message",
        "parent_event_id": None,
        "prev_event_hash": prev_hash,
        "content": {"body": body, "msgtype": "m.text"},
    }
    event["signature"] = key.sign(signing_bytes(event))
    client = client_id_for(sender_id, fingerprint(key.public_key))
    path = bucket / log_file_path(ROOM, timestamp_ms, timestamp_ms, client)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(event) + "\n")
    old = time.time() - 60  # a finished file, not one still being written (§1)
    os.utime(path, (old, old))
    return event_hash(event)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", type=Path, required=True, help="bucket of 1M events")
    parser.add_argument("--cache", type=Path, help="a cache already synced from --bucket")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bucketchat-incr-"))
    env = dict(os.environ, BUCKETCHAT_HOME=str(work / "home"))
    try:
        bucket = work / "bucket"
        shutil.copytree(options.bucket, bucket, copy_function=os.link)
        cache = work / "cache.duckdb"
        if options.cache:
            shutil.copy(options.cache, cache)
            search = Path(f"{options.cache}.search")
            if search.is_dir():
                shutil.copytree(search, Path(f"{cache}.search"))
        sync = [*BUCKETCHAT, "--bucket", str(bucket), "--db", str(cache), "sync", "--json"]
        timed(sync, env)  # the cold sync, or migrations and catch-up of a copied cache
        with duckdb.connect(str(cache), read_only=True) as con:
            found = con.execute(LAST_OF_SENDER, [ROOM, sender_name(SENDER)]).fetchone()
            sized = con.execute(ROOM_SIZE, [ROOM]).fetchone()
            total = con.execute("SELECT count(*) FROM event_rows").fetchone()
        assert found and sized and total
        prev_hash, room_events, last_ms, cache_events = found[0], sized[0], sized[1], total[0]
        version = statistics.median(
            timed([*BUCKETCHAT, "--version"], env)[0] for _ in range(options.runs)
        )
        walls = []
        for run in range(options.runs):
            last_ms += 60_000
            prev_hash = write_message(bucket, prev_hash, last_ms, f"benchmark message {run}")
            wall, out = timed(sync, env)
            report = json.loads(out)
            assert report["events_ingested"] == 1 and not report["findings"], report
            walls.append(wall)
        results = {
            "cache_events": cache_events,
            "room_events": room_events,
            "runs": options.runs,
            "median_seconds": round(statistics.median(walls), 2),
            "min_seconds": round(min(walls), 2),
            "max_seconds": round(max(walls), 2),
            "version_ms": round(version * 1000),
        }
        print(json.dumps(results), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if options.write:
        write_results(results)


def write_results(results: dict[str, int | float]) -> None:
    machine = results_md.machine()
    lines = [
        "## Incremental sync",
        "",
        f"Machine: {machine}. Measured {time.strftime('%Y-%m-%d')}.",
        "",
        "Command: `python benchmarks/bench_incremental.py --bucket BUCKET --runs "
        f"{results['runs']} --write`, BUCKET from `generate_bucket.py --events 1000000 "
        "--files 2000`. Each run adds one file of one chained message to a room and times "
        "`bucketchat sync --json` (no target in the issues).",
        "",
        "| measure | result |",
        "|---|---|",
        f"| sync of one new message into a cache of {results['cache_events']:,} events "
        f"(its room: {results['room_events']:,}) | **{results['median_seconds']} s** median "
        f"of {results['runs']} ({results['min_seconds']} to {results['max_seconds']} s) |",
        f"| `bucketchat --version`, for scale | {results['version_ms']} ms |",
    ]
    results_md.replace_section("## Incremental sync", lines)


if __name__ == "__main__":
    main()
