"""Cloud sync benchmark (issue 5): 10,000 one-event objects on moto's S3 server.

    python benchmarks/bench_cloud.py --write

Starts moto's S3 server (``moto_server``, its own process, 127.0.0.1, a free port, killed
by PID at the end), uploads ``--objects`` objects of one signed event each the way the
upstream reference client writes them (no member events with keys, ``prev_event_hash``
null, local-time event ids, one object per event), then measures in the same run:

(a) a bare parallel download of every object: one listing and a ``get_object`` of each,
    with the boto3 client of ``S3Bucket`` (same configuration) and ``READ_WORKERS`` threads,
    the concurrency ``S3Bucket.read_many`` uses, in this process;
(b) a cold ``bucketchat sync`` of the bucket (the real CLI in a subprocess, the senders'
    keys pinned with ``keys trust``, a fresh cache);
(c) a no-change re-sync (the same command again).

(a) and (b) alternate ``--rounds`` times; the medians are reported. Target: (b) <= 1.5 x (a).
The emulator is the floor: moto serves a few hundred reads a second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bucketchat.protocol.canonical import signing_bytes  # noqa: E402
from bucketchat.protocol.signing import SigningKey  # noqa: E402

BUCKETCHAT = [sys.executable, "-m", "bucketchat"]
RESULTS = HERE / "RESULTS.md"
SECTION = "## Clouds"
BUCKET = "bench-upstream"
PREFIX = "chat"
ROOM = "bench-room"
SENDERS = 10
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LOCAL_ZONE = timezone(timedelta(hours=2))  # upstream ids carry the writer's local time
LIFETIME = 3600  # seconds: moto dies after this even if the script is killed


# ---------------------------------------------------------------- moto, in its own process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        raise SystemExit("moto_server is missing: uv pip install -p .venv 'moto[server]>=5.1'")
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["timeout", str(LIFETIME), str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto_server did not start:\n{log.read_text(errors='replace')[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# ---------------------------------------------------------------- the upstream bucket


def sender_id(index: int) -> str:
    return f"writer{index:02d}@example.com"


def sender_key(index: int) -> SigningKey:
    return SigningKey(hashlib.sha256(f"bench-cloud:{index}".encode()).digest())


def upstream_objects(count: int) -> list[tuple[str, bytes]]:
    """``count`` one-event objects as the upstream client writes them."""
    keys = [sender_key(i) for i in range(SENDERS)]
    objects = []
    for n in range(count):
        at = BASE_MS + 1_500 * n
        who = n % SENDERS
        local = datetime.fromtimestamp(at / 1000, tz=LOCAL_ZONE).isoformat(timespec="seconds")
        event: dict[str, Any] = {
            "event_id": f"{ROOM}::{local}::{uuid.uuid4()}",
            "room_id": ROOM,
            "timestamp_ms": at,
            "sender_id": sender_id(who),
            "type": "m.room.message",
            "parent_event_id": None,
            "prev_event_hash": None,
            "content": {"body": f"message {n}: the quick brown fox", "msgtype": "m.text"},
        }
        event["signature"] = keys[who].sign(signing_bytes(event))
        day = datetime.fromtimestamp(at / 1000, tz=UTC).strftime("%Y-%m-%d")
        name = sender_id(who).split("@")[0]
        key = f"{PREFIX}/rooms/{ROOM}/logs/{day}/messages_{at}_{at}_{name}.jsonl"
        objects.append((key, (json.dumps(event) + "\n").encode()))
    metadata = {"room_id": ROOM, "created_at": "2026-01-01T00:00:00Z", "version": "1.0"}
    metadata["protocol"] = "bucket-chat-v1"
    objects.append((f"{PREFIX}/rooms/{ROOM}/metadata.json", json.dumps(metadata).encode()))
    return objects


def bucket_client(endpoint: str) -> Any:
    """The boto3 client S3Bucket builds for s3://BUCKET/PREFIX (same configuration)."""
    from bucketchat.config import Settings
    from bucketchat.storage import S3Bucket

    bucket = S3Bucket(f"s3://{BUCKET}/{PREFIX}", Settings(file={}).cloud_table("s3"))
    assert bucket.endpoint == endpoint, bucket.endpoint
    return bucket


def upload(endpoint: str, objects: list[tuple[str, bytes]]) -> float:
    s3 = bucket_client(endpoint).s3
    s3.create_bucket(Bucket=BUCKET)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), objects)
        )
    return time.perf_counter() - started


# ---------------------------------------------------------------- the measures


def bare_download(endpoint: str) -> tuple[float, float, int, int]:
    """(seconds, of which listing, objects, bytes): one listing, then every object with
    READ_WORKERS threads."""
    from bucketchat.storage import READ_WORKERS

    bucket = bucket_client(endpoint)
    s3 = bucket.s3
    started = time.perf_counter()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{PREFIX}/rooms/", PaginationConfig={"PageSize": 1000}
    ):
        keys += [obj["Key"] for obj in page.get("Contents", ())]
    listed = time.perf_counter() - started

    def get(key: str) -> int:
        return len(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        total = sum(pool.map(get, keys))
    return time.perf_counter() - started, listed, len(keys), total


def cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [*BUCKETCHAT, *args], env=env, capture_output=True, text=True, check=False, cwd=ROOT
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bucketchat {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stdout


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import boto3
    import moto

    return (
        f"{model or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"moto {moto.__version__}, boto3 {boto3.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10_000, help="one-event objects")
    parser.add_argument("--rounds", type=int, default=3, help="(a)/(b) pairs; medians reported")
    parser.add_argument("--resyncs", type=int, default=5, help="runs of (c); median reported")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bucketchat-bench-cloud-"))
    load_before = os.getloadavg()
    moto, endpoint = start_moto(work / "moto.log")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "BUCKETCHAT_HOME": str(work / "home"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        env.pop(name, None)
        os.environ.pop(name, None)
    os.environ.update(env)  # bucket_client reads the same variables as the CLI
    url = f"s3://{BUCKET}/{PREFIX}"
    results: dict[str, Any] = {"machine": machine(), "objects": options.objects}
    try:
        objects = upstream_objects(options.objects)
        seconds = upload(endpoint, objects)
        results["upload_seconds"] = round(seconds, 1)
        print(f"uploaded {len(objects):,} objects in {seconds:.1f} s", flush=True)
        for index in range(SENDERS):
            cli(["keys", "trust", sender_id(index), sender_key(index).public_key], env)

        bare, listing, cold, reports = [], [], [], []
        for round_ in range(options.rounds):
            seconds, listed, count, size = bare_download(endpoint)
            bare.append(seconds)
            listing.append(listed)
            print(f"(a) round {round_}: {count:,} objects, {size:,} bytes in {seconds:.2f} s")
            db = work / f"cold-{round_}.duckdb"
            seconds, out = cli(["--bucket", url, "--db", str(db), "sync", "--json"], env)
            report = json.loads(out)
            if report["files_ingested"] != options.objects or report["events_rejected"]:
                raise SystemExit(f"the cold sync did not ingest every object: {report}")
            cold.append(seconds)
            reports.append(report)
            print(f"(b) round {round_}: {report['events_ingested']:,} events in {seconds:.2f} s")
        resync = []
        db = work / f"cold-{options.rounds - 1}.duckdb"
        for _ in range(options.resyncs):
            seconds, out = cli(["--bucket", url, "--db", str(db), "sync", "--json"], env)
            assert json.loads(out)["files_ingested"] == 0
            resync.append(seconds)
        version, _ = cli(["--version"], env)
        results.update(
            bare_seconds=round(statistics.median(bare), 2),
            bare_runs=[round(s, 2) for s in bare],
            listing_ms=round(statistics.median(listing) * 1000),
            cold_seconds=round(statistics.median(cold), 2),
            cold_runs=[round(s, 2) for s in cold],
            ratio=round(statistics.median(cold) / statistics.median(bare), 2),
            resync_ms=round(statistics.median(resync) * 1000),
            version_ms=round(version * 1000),
            events=reports[-1]["events_ingested"],
            load_before=[round(x, 2) for x in load_before],
            load_after=[round(x, 2) for x in os.getloadavg()],
        )
        print(json.dumps(results), flush=True)
    finally:
        stop(moto)
        shutil.rmtree(work, ignore_errors=True)
    if options.write:
        write_results(results, options)


def write_results(results: dict[str, Any], options: argparse.Namespace) -> None:
    ok = "meets" if results["ratio"] <= 1.5 else "misses"
    per_second = round(results["objects"] / results["bare_seconds"])
    lines = [
        SECTION,
        "",
        f"Machine: {results['machine']}. Measured {time.strftime('%Y-%m-%d')}; load average "
        f"{results['load_before'][0]} before, {results['load_after'][0]} after.",
        "",
        f"Command: `python benchmarks/bench_cloud.py --objects {options.objects} "
        f"--rounds {options.rounds} --write`. moto's S3 server (`moto_server`, its own "
        f"process on 127.0.0.1) holds {results['objects']:,} one-event objects written the "
        "upstream way (no keys in the log, no chains, local-time ids); the senders' keys are "
        "pinned. (a) and (b) alternate; medians of "
        f"{options.rounds} rounds (a: {', '.join(map(str, results['bare_runs']))} s; "
        f"b: {', '.join(map(str, results['cold_runs']))} s).",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| (a) bare parallel download: 1 listing + {results['objects']:,} `get_object`, "
        f"S3Bucket's boto3 client, READ_WORKERS threads | {results['bare_seconds']} s "
        f"({per_second:,} objects/s) | the floor |",
        f"| (b) cold `bucketchat sync` (CLI subprocess: start, list, download, verify, store, "
        f"index) of {results['events']:,} events | {results['cold_seconds']} s = "
        f"**{results['ratio']} x (a)** | ≤ 1.5 x (a): {ok} |",
        f"| (c) no-change re-sync of {results['objects']:,} objects | "
        f"**{results['resync_ms']} ms**; its floor: the listing alone {results['listing_ms']} ms, "
        f"`bucketchat --version` {results['version_ms']} ms | — |",
        "",
        f"Uploading the objects (16 threads, `put_object`) took {results['upload_seconds']} s.",
    ]
    section = "\n".join(lines) + "\n"
    text = RESULTS.read_text("utf-8") if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(SECTION + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else "\n" + text[end + 1 :])
    RESULTS.write_text(text, "utf-8")


if __name__ == "__main__":
    main()
