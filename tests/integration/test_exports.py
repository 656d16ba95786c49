"""Every export format through a real cache: redactions honoured, round trips, bundles."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bucketchat.audit.bundle import verify_bundle
from bucketchat.cache import open_cache
from bucketchat.export import ExportOptions, export
from bucketchat.protocol.canonical import event_hash
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ROOM = "general"
SECRET = "launch codes 0000"
HOSTILE = (
    '<script>alert("x")</script><img src="https://tracker.example/p.png" onerror=alert(1)>'
    ' <a href="http://evil.example">click</a> <iframe src=//evil.example></iframe> '
    "\x1b[31m red ]]> --> <style>@import url(https://x.example/a.css)</style>"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("exports")
    chat = ChatBuilder(root / "bucket")
    first = chat.message("alice", ROOM, "hello everyone")
    reply = chat.message("bob", ROOM, "hi alice", parent=first["event_id"])
    chat.message("alice", ROOM, "nested reply", parent=reply["event_id"])
    secret = chat.message("alice", ROOM, SECRET)
    chat.edit("alice", secret, SECRET + " (edited)")
    chat.redact("alice", secret)
    reaction = chat.react("bob", first, "👍")
    chat.react("carol", first, "👍")
    chat.redact("bob", reaction)
    chat.message("mallory", ROOM, HOSTILE)
    chat.message("carol", "random", "another room", at=chat.clock + 86_400_000)
    chat.flush()
    db = root / "cache.duckdb"
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    return {"root": root, "db": db, "chat": chat, "secret": secret}


def run(world: dict[str, Any], fmt: str, name: str, **options: Any) -> Path:
    output = world["root"] / name
    rooms = options.pop("rooms", [ROOM])
    with open_cache(world["db"], read_only=True) as cache:
        export(cache, fmt, output, ExportOptions(rooms=rooms, **options))
    return output


def all_text(path: Path) -> str:
    if path.is_file():
        return path.read_text("utf-8")
    return "".join(p.read_text("utf-8", errors="replace") for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("jsonl", "a.jsonl"), ("csv", "a.csv"), ("markdown", "a.md"), ("html", "a.html"),
     ("bundle", "bundle-a")],
)
def test_redacted_text_is_absent_from_every_text_format(
    world: dict[str, Any], fmt: str, name: str
) -> None:
    text = all_text(run(world, fmt, name))
    assert "launch codes" not in text
    assert "hello everyone" in text or (fmt in ("jsonl", "bundle") and "hello everyone" in text)


def test_redacted_text_is_absent_from_parquet(world: dict[str, Any]) -> None:
    output = run(world, "parquet", "a.parquet")
    rows = duckdb.execute("SELECT * FROM read_parquet(?)", [str(output)]).fetchall()
    assert "launch codes" not in json.dumps(rows, default=str)
    raw = output.read_bytes()
    assert b"launch codes" not in raw


def test_include_redacted_keeps_the_original_lines(world: dict[str, Any]) -> None:
    text = run(world, "jsonl", "with.jsonl", include_redacted=True).read_text("utf-8")
    assert "launch codes" in text
    assert '"redacted"' not in text


def test_jsonl_round_trips_to_the_same_signed_events(world: dict[str, Any]) -> None:
    lines = run(world, "jsonl", "rt.jsonl").read_text("utf-8").splitlines()
    stubs = [json.loads(x)["redacted"] for x in lines if x.startswith('{"redacted"')]
    events = [json.loads(x) for x in lines if not x.startswith('{"redacted"')]
    secret = world["secret"]
    assert {s["event_id"] for s in stubs} >= {secret["event_id"]}
    assert set(stubs[0]) == {"event_id", "event_hash", "prev_event_hash", "sender_id",
                             "timestamp_ms"}
    with open_cache(world["db"], read_only=True) as cache:
        stored = dict(
            cache.rows(
                "SELECT event_hash, event_id FROM events WHERE room_id = ? AND trust <> 'invalid'",
                [ROOM],
            )
        )
    exported = {event_hash(e): e["event_id"] for e in events}
    exported.update({s["event_hash"]: s["event_id"] for s in stubs})
    assert exported == stored
    original = {event_hash(e) for e in world["chat"].events}
    assert {event_hash(e) for e in events} <= original  # byte-identical signed content


def test_parquet_round_trips_and_partitions_by_room_and_day(world: dict[str, Any]) -> None:
    output = run(world, "parquet", "all-parquet", rooms=[ROOM, "random"], all_rooms=True)
    folders = sorted(p.relative_to(output).parent.as_posix() for p in output.rglob("*.parquet"))
    assert folders == [
        "room_id=general/day=2026-01-01",
        "room_id=random/day=2026-01-01",  # carol's join
        "room_id=random/day=2026-01-02",
    ]
    con = duckdb.connect()
    back = con.execute(
        "SELECT room_id, event_id, event_hash, signature, content, redacted, trust "
        "FROM read_parquet(?, hive_partitioning = true)",
        [f"{output}/**/*.parquet"],
    ).fetchall()
    with open_cache(world["db"], read_only=True) as cache:
        stored = cache.rows(
            "SELECT room_id, event_id, event_hash, signature, content::VARCHAR, trust "
            "FROM events WHERE trust <> 'invalid'"
        )
    by_hash = {row[2]: row for row in back}
    assert set(by_hash) == {row[2] for row in stored}
    for room_id, event_id, digest, signature, content, trust in stored:
        got = by_hash[digest]
        assert got[:4] == (room_id, event_id, digest, signature) and got[6] == trust
        assert got[4] == (None if got[5] else content)
    assert con.execute(
        "SELECT count(*) FROM parquet_metadata(?) WHERE compression = 'ZSTD'",
        [str(next(output.rglob("*.parquet")))],
    ).fetchone() != (0,)


def test_csv_holds_current_text_and_reactions(world: dict[str, Any]) -> None:
    import csv

    with run(world, "csv", "b.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    hello = next(r for r in rows if r["body"] == "hello everyone")
    assert json.loads(hello["reactions"]) == {"👍": 1}  # bob's redacted, carol's counts
    assert hello["reply_count"] == "2"


def test_markdown_indents_threads(world: dict[str, Any]) -> None:
    text = run(world, "markdown", "b.md").read_text("utf-8")
    lines = text.splitlines()
    root = next(i for i, x in enumerate(lines) if "hello everyone" in x)
    assert lines[root].startswith("- ")
    assert lines[root + 1].startswith("  - ") and "hi alice" in lines[root + 1]
    assert lines[root + 2].startswith("    - ") and "nested reply" in lines[root + 2]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_offline_escaped_and_scriptless(world: dict[str, Any]) -> None:
    page = run(world, "html", "b.html").read_text("utf-8")
    parser = _Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert names <= {"html", "head", "meta", "title", "style", "body", "section", "h1", "h2",
                     "span", "div", "p", "time"}, names
    for _tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert name not in ("src", "href", "action", "srcset", "poster", "data")
            assert not name.startswith("on")
            assert "//" not in (value or "") or name == "content"
    assert "&lt;script&gt;" in page and "&lt;iframe" in page
    style = page[page.index("<style>") : page.index("</style>")]
    assert "@import" not in style and "url(" not in style
    assert "\x1b" not in page
    assert "default-src 'none'" in page
    assert "prefers-color-scheme: dark" in page
    assert "hi alice" in page and "👍 1" in page and "message deleted" in page


def test_bundle_verifies_offline(world: dict[str, Any]) -> None:
    bundle = run(world, "bundle", "bundle-ok", rooms=[ROOM, "random"], all_rooms=True)
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {
        "rooms/general/events.jsonl", "rooms/random/events.jsonl", "keys.json", "audit.json",
        "digests.json",
    }
    report = verify_bundle(bundle)
    assert report["ok"], report["findings"]
    assert all(room["digest_matches"] for room in report["rooms"])
    with open_cache(world["db"], read_only=True) as cache:
        from bucketchat.audit.report import audit_report

        digests = {r["room_id"]: r["digest"] for r in audit_report(cache)["rooms"]}
    assert {r["room_id"]: r["digest"] for r in report["rooms"]} == digests


def _tampered(world: dict[str, Any], name: str) -> Path:
    return run(world, "bundle", name, rooms=[ROOM, "random"], all_rooms=True)


def test_bundle_detects_a_changed_line(world: dict[str, Any]) -> None:
    bundle = _tampered(world, "bundle-line")
    events = bundle / "rooms" / ROOM / "events.jsonl"
    events.write_text(events.read_text("utf-8").replace("hi alice", "hi mallory"), "utf-8")
    report = verify_bundle(bundle)
    assert not report["ok"]
    kinds = {f["kind"] for f in report["findings"]}
    assert {"bundle_file_changed", "bad_signature"} <= kinds
    assert not next(r for r in report["rooms"] if r["room_id"] == ROOM)["digest_matches"]


def test_bundle_detects_a_removed_line_even_with_a_rewritten_manifest(
    world: dict[str, Any]
) -> None:
    from bucketchat.audit.bundle import sha256_file

    bundle = _tampered(world, "bundle-drop")
    events = bundle / "rooms" / ROOM / "events.jsonl"
    lines = events.read_text("utf-8").splitlines()
    events.write_text("\n".join(line for line in lines if "hi alice" not in line) + "\n")
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"]["rooms/general/events.jsonl"] = sha256_file(events)
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    report = verify_bundle(bundle)
    assert not report["ok"]
    assert not next(r for r in report["rooms"] if r["room_id"] == ROOM)["digest_matches"]


def test_bundle_detects_an_unlisted_file(world: dict[str, Any]) -> None:
    bundle = _tampered(world, "bundle-extra")
    (bundle / "rooms" / ROOM / "extra.txt").write_text("hi")
    report = verify_bundle(bundle)
    assert not report["ok"]
    assert "bundle_file_unlisted" in {f["kind"] for f in report["findings"]}


def test_since_and_until_narrow_the_export(world: dict[str, Any]) -> None:
    chat_start = 1_767_225_600_000
    output = run(world, "jsonl", "narrow.jsonl", rooms=[ROOM, "random"],
                 since_ms=chat_start + 86_400_000)
    lines = output.read_text().splitlines()
    assert lines and all(json.loads(x)["room_id"] == "random" for x in lines)
