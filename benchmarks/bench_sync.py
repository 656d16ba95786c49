"""Sync benchmarks (issue 3): cold sync of a large bucket, no-change re-sync, peak memory.

    python benchmarks/bench_sync.py --bucket /tmp/bench-1m --many /tmp/bench-20k-files --write

``--bucket`` is a bucket from generate_bucket.py (1,000,000 events in 2,000 files for the
issue's targets); ``--many`` one with many small files (20,000) for the no-change re-sync.
Each is synced by the real console script in a subprocess, as a user runs it; memory is
the peak of the summed RSS of that process and all its children (the verify workers),
sampled every 20 ms from /proc. Targets: cold sync >= 25,000 events/s end to end; a
no-change re-sync of 20,000 files at most 300 ms slower than ``bucketchat --version``;
peak memory under 1 GiB.
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
import threading
import time
from pathlib import Path

import results_md

HERE = Path(__file__).resolve().parent
BUCKETCHAT = [sys.executable, "-m", "bucketchat"]


def _tree_rss(pid: int) -> int:
    """Summed RSS in bytes of ``pid`` and every descendant."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child, parent = int(entry), int(fields[1])
        children.setdefault(parent, []).append(child)
        rss[child] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak tree RSS, stdout) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit {process.returncode}")
    return wall, peak, out.decode()


def median_wall(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(run_measured(args, env)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", type=Path, required=True, help="large bucket (1M events)")
    parser.add_argument("--many", type=Path, help="bucket with many small files (20k)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each quick command")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bucketchat-bench-"))
    env = dict(os.environ, BUCKETCHAT_HOME=str(work / "home"))
    results: dict[str, object] = {}
    try:
        cache = work / "cold.duckdb"
        wall, peak, out = run_measured(
            [*BUCKETCHAT, "--bucket", str(options.bucket), "--db", str(cache), "sync", "--json"],
            env,
        )
        report = json.loads(out)
        results["cold_sync"] = {
            "events": report["events_ingested"],
            "files": report["files_ingested"],
            "wall_seconds": round(wall, 2),
            "events_per_second": round(report["events_ingested"] / wall),
            "peak_rss_mib": round(peak / 2**20),
        }
        print(json.dumps(results["cold_sync"]), flush=True)
        if options.many:
            many_cache = work / "many.duckdb"
            sync = [
                *BUCKETCHAT,
                "--bucket",
                str(options.many),
                "--db",
                str(many_cache),
                "sync",
                "--json",
            ]
            first, _, out = run_measured(sync, env)
            files = json.loads(out)["files_scanned"]
            version = median_wall([*BUCKETCHAT, "--version"], env, options.runs)
            again = median_wall(sync, env, options.runs)
            results["no_change_resync"] = {
                "files": files,
                "first_sync_seconds": round(first, 2),
                "version_ms": round(version * 1000),
                "resync_ms": round(again * 1000),
                "over_version_ms": round((again - version) * 1000),
            }
            print(json.dumps(results["no_change_resync"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if options.write:
        write_results(results, options)


def write_results(results: dict[str, object], options: argparse.Namespace) -> None:
    machine = results_md.machine()
    cold = results["cold_sync"]
    assert isinstance(cold, dict)
    lines = [
        "## Sync",
        "",
        f"Machine: {machine}. Measured {time.strftime('%Y-%m-%d')}.",
        "",
        "Command: `python benchmarks/bench_sync.py --bucket BUCKET --many MANY --write`, with "
        "BUCKET from `generate_bucket.py --events 1000000 --files 2000` and MANY from "
        "`generate_bucket.py --events 100000 --files 20000`.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| cold sync, {cold['events']:,} events in {cold['files']:,} files | "
        f"{cold['wall_seconds']} s = **{cold['events_per_second']:,} events/s** "
        "| ≥ 25,000 events/s |",
        f"| peak memory (sync process and its workers) | **{cold['peak_rss_mib']} MiB** "
        "| < 1 GiB |",
    ]
    many = results.get("no_change_resync")
    if isinstance(many, dict):
        lines.append(
            f"| no-change re-sync of {many['files']:,} files | {many['resync_ms']} ms vs "
            f"`--version` {many['version_ms']} ms: **+{many['over_version_ms']} ms** | ≤ +300 ms |"
        )
        lines.append(
            f"| first sync of those {many['files']:,} small files | "
            f"{many['first_sync_seconds']} s | — |"
        )
    results_md.replace_section("## Sync", lines)


if __name__ == "__main__":
    main()
