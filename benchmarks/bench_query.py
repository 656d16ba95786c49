"""Query-layer benchmarks on a synced cache: search, log pages, threads, Parquet, CLI wall time.

    python benchmarks/generate_bucket.py --events 1000000 --files 2000 --out /tmp/b
    python benchmarks/bench_query.py --bucket /tmp/b --db /tmp/b.duckdb [--write]

``--bucket`` syncs the bucket into ``--db`` first when the cache is empty (timed: that is
the sync engine plus the query layer's first refresh and index build). ``--write``
replaces the "## Query layer" section of benchmarks/RESULTS.md (other sections stay).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bucketchat.cache import open_cache  # noqa: E402
from bucketchat.export import ExportOptions, resolve_rooms  # noqa: E402
from bucketchat.export.parquet import export_parquet  # noqa: E402
from bucketchat.projections.search.index import index_dir  # noqa: E402
from bucketchat.projections.search.searcher import Searcher  # noqa: E402
from bucketchat.projections.timeline.read import thread, timeline  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Query layer"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """p50 and p95 in milliseconds over ``repeat`` calls (after one warm-up)."""
    result = fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], result


def wall(args: list[str], repeat: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def engine_table(path: Path | None) -> list[str]:
    """The search-engine comparison of bench_search_engines.py, as a Markdown table."""
    if path is None or not path.exists():
        return []
    data = json.loads(path.read_text("utf-8"))
    lines = [
        f"Search engines on the same {data['messages']:,} messages "
        "(benchmarks/bench_search_engines.py, top 20 by BM25, p50 ms; DuckDB FTS with "
        "duckdb 1.5.5 + duckdb-extension-fts, the only offline combination):",
        "",
        "| engine | rare | common | very common | phrase | build | add 1,000 | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("tantivy", "sqlite_fts5", "duckdb_fts"):
        row = data.get(name, {})
        if "build_s" not in row:
            lines.append(f"| {name} | {row} | | | | | | |")
            continue
        lines.append(
            f"| {name} | {row['rare']} | {row['common']} | {row['very common']} | "
            f"{row['phrase']} | {row['build_s']} s | {row['add_1000_s']} s | "
            f"{row['size_mb']} MB |"
        )
    if "note" in data.get("duckdb_fts", {}):
        lines += ["", f"DuckDB FTS: {data['duckdb_fts']['note']}."]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--bucket", type=Path)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--engines", type=Path,
                        help="engines.json of bench_search_engines.py, to include")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    load_before = os.getloadavg()[0]

    if args.bucket and not args.db.exists():
        from bucketchat.session import sync_bucket
        from bucketchat.storage import LocalBucket

        started = time.perf_counter()
        report = sync_bucket(LocalBucket(args.bucket), args.db)
        seconds = time.perf_counter() - started
        notes.append(
            f"first sync of {report.events_ingested:,} events in {report.files_ingested:,} "
            f"files: {seconds:.1f} s (sync engine + first timeline refresh + index build)"
        )

    with open_cache(args.db) as cache:
        from bucketchat.projections.search.index import update_index
        from bucketchat.projections.timeline import refresh as query_state

        started = time.perf_counter()
        query_state.refresh(cache, full=True)
        refresh_s = time.perf_counter() - started
        shutil.rmtree(index_dir(cache.path), ignore_errors=True)
        started = time.perf_counter()
        indexed = update_index(cache)
        index_s = time.perf_counter() - started
        events = cache.one("SELECT count(*) FROM event_rows")
        total_events = int(events[0]) if events else 0
        # what each sync pays for a room it touched: the largest room recomputed, rolled back
        big_room, big_items = cache.one(
            "SELECT room_id, items FROM timeline_rooms ORDER BY items DESC LIMIT 1"
        ) or ("", 0)
        fingerprints = dict(cache.rows(query_state.ROOM_KEY_FINGERPRINTS))
        room_runs = []
        for _ in range(3):
            cache.execute("BEGIN TRANSACTION")
            started = time.perf_counter()
            query_state._refresh_rooms(cache, [big_room], 0, fingerprints)
            room_runs.append(time.perf_counter() - started)
            cache.execute("ROLLBACK")
    rows.append(("full timeline refresh (all rooms)", f"{refresh_s * 1000:,.0f} ms", "—"))
    rows.append((f"full search index build ({indexed:,} rows)", f"{index_s:,.1f} s", "—"))
    rows.append((f"a room recomputed whole ({big_items:,} items; the append path skips this)",
                 f"{statistics.median(room_runs) * 1000:,.0f} ms", "median of 3"))

    searcher = Searcher(index_dir(args.db))
    for label, text in [
        ("search rare word (zyzzyva)", "zyzzyva"),
        ("search common word (deploy)", "deploy"),
        ("search very common word (the)", "the"),
        ('search phrase ("deploy today")', '"deploy today"'),
        ("search with filters (deploy in:room-003 from:user0007)",
         "deploy in:room-003 from:user0007"),
        ("search CJK bigram (東京)", "東京"),
        ("search accent-folded (cafe)", "cafe"),
    ]:
        p50, p95, hits = timed(lambda text=text: searcher.search(text, limit=20), args.repeat)
        rows.append((label, f"{p50:.2f} ms", f"{p95:.2f} ms ({len(hits)} hits)"))

    with open_cache(args.db, read_only=True) as cache:
        rooms = [r[0] for r in cache.rows(
            "SELECT room_id FROM timeline_rows GROUP BY room_id ORDER BY count(*) DESC"
        )]
        room = rooms[0]
        p50, p95, items = timed(lambda: timeline(cache, room, limit=50), args.repeat)
        rows.append(("log page (newest 50)", f"{p50:.2f} ms", f"{p95:.2f} ms"))
        middle_row = cache.one(
            "SELECT event_id FROM timeline_rows WHERE room_id = ? "
            "ORDER BY timestamp_ms LIMIT 1 OFFSET (SELECT count(*) // 2 FROM timeline_rows "
            "WHERE room_id = ?)",
            [room, room],
        )
        middle = str(middle_row[0]) if middle_row else items[0]["event_id"]
        p50, p95, _ = timed(lambda: timeline(cache, room, limit=50, before=middle), args.repeat)
        rows.append(("log page (--before, mid-room)", f"{p50:.2f} ms", f"{p95:.2f} ms"))
        big = cache.one(
            "SELECT root_event_id, reply_count FROM threads ORDER BY reply_count DESC LIMIT 1"
        )
        reply = cache.one(
            "SELECT event_id FROM timeline_rows WHERE depth >= 2 LIMIT 1"
        )
        if big:
            p50, p95, found = timed(lambda: thread(cache, str(big[0])), args.repeat)
            rows.append((f"thread from its root ({len(found['events'])} events)",
                         f"{p50:.2f} ms", f"{p95:.2f} ms"))
        if reply:
            p50, p95, found = timed(lambda: thread(cache, str(reply[0])), args.repeat)
            rows.append((f"thread from a deep reply ({len(found['events'])} events)",
                         f"{p50:.2f} ms", f"{p95:.2f} ms"))
        options = ExportOptions(rooms=resolve_rooms(cache, None, True), all_rooms=True)
        runs = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as scratch:
                started = time.perf_counter()
                result = export_parquet(cache, Path(scratch) / "parquet", options)
                runs.append(time.perf_counter() - started)
                size = sum(
                    p.stat().st_size for p in (Path(scratch) / "parquet").rglob("*.parquet")
                )
        rows.append((f"Parquet export --all ({result.events:,} events, {result.files} files, "
                     f"{size / 1e6:.0f} MB zstd)", f"{statistics.median(runs):.2f} s",
                     f"median of 3 ({min(runs):.2f} to {max(runs):.2f} s)"))

    env = {**os.environ, "BUCKETCHAT_DB": str(args.db)}
    env.pop("BUCKETCHAT_BUCKET", None)
    exe = str(Path(sys.executable).with_name("bucketchat"))
    cli_repeat = 7
    startup = wall([exe, "--version"], cli_repeat, env)
    python_only = wall([sys.executable, "-c", "pass"], cli_repeat, env)
    parse = wall([exe, "log", "--help"], cli_repeat, env)
    rows.append(("process start-up: `bucketchat --version`", f"{startup:.0f} ms",
                 f"(bare `python -c pass`: {python_only:.0f} ms; `bucketchat log --help`, "
                 f"start-up with typer's command parsing: {parse:.0f} ms)"))
    thread_id = str(big[0]) if big else items[-1]["event_id"]
    with tempfile.TemporaryDirectory() as scratch:
        for label, command in [
            ("log ROOM", ["log", room]),
            ("log ROOM --json", ["log", room, "--json"]),
            ("thread ID", ["thread", thread_id]),
            ("search deploy", ["search", "deploy"]),
            ("search zyzzyva --json", ["search", "zyzzyva", "--json"]),
            ("export ROOM --format html (1 room)",
             ["export", room, "--format", "html", "-o", f"{scratch}/r.html"]),
        ]:
            took = wall([exe, *command], cli_repeat if "export" not in label else 1, env)
            rows.append((f"`bucketchat {label}` wall", f"{took:.0f} ms",
                         f"start-up + {took - startup:.0f} ms (`log --help` + "
                         f"{took - parse:.0f} ms)"))

    load_after, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = max(load_before, load_after) > cores
    notes.append(
        f"1-minute load average {load_before:.1f} at the start and {load_after:.1f} at "
        f"the end on {cores} cores"
        + (
            ": above the core count, other work shared the machine and the figures are "
            "that much slower than on an idle one"
            if busy
            else " (the benchmark's own processes count in it)"
        )
    )
    command = " ".join(["python", "benchmarks/bench_query.py", *[
        a if not a.startswith("/") else f"<{Path(a).name}>" for a in (argv or sys.argv[1:])
    ]])
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}.",
        f"Cache: {total_events:,} events (benchmarks/generate_bucket.py --events 1000000 "
        "--files 2000: 10 rooms, 50 senders, ~15% replies, edits, redactions, reactions).",
        f"Command: `{command}`; in-process figures are p50/p95 over {args.repeat} runs after "
        "a warm-up, CLI figures the median of 7 runs.",
        "",
        "| what | p50 / time | p95 / note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        *[f"- {note}" for note in notes],
        "",
        *engine_table(args.engines),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        existing = RESULTS.read_text("utf-8") if RESULTS.exists() else "# Benchmark results\n\n"
        if SECTION in existing:
            head, _, rest = existing.partition(SECTION)
            tail = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
            existing = head + text + ("\n" + tail if tail else "")
        else:
            existing = existing.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(existing, "utf-8")
    print(json.dumps({"rows": len(rows)}), file=sys.stderr)


if __name__ == "__main__":
    main()
