"""``bucketchat log|thread|search|export|verify`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bucketchat.cli import main
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ROOM = "general"
NASTY = "hi \x1b[2J\x1b]0;pwned\x07 [bold red]not markup[/] \r\x08overwrite \u202eevil"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            main.run(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    chat = ChatBuilder(tmp_path / "bucket")
    root = chat.message("alice", ROOM, "hello world")
    reply = chat.message("bob", ROOM, "a reply", parent=root["event_id"])
    chat.message("alice", ROOM, NASTY)
    gone = chat.message("alice", ROOM, "soon gone")
    chat.redact("alice", gone)
    chat.edit("alice", root, "hello edited world")
    chat.react("bob", root, "🎉")
    for n in range(8):
        chat.message("carol", ROOM, f"filler {n}")
    chat.flush()
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    return {"db": db, "root": root, "reply": reply, "tmp": tmp_path,
            "flags": ["--db", str(db)]}


def test_log_json_shape(cli: Any, world: dict[str, Any]) -> None:
    result = cli("log", ROOM, "--json", *world["flags"])
    assert result.code == 0, result.err
    items = json.loads(result.out)
    keys = {"event_id", "event_hash", "room_id", "timestamp_ms", "sender_id", "type", "body",
            "edited", "redacted", "reactions", "parent_event_id", "thread_root", "reply_count",
            "trust"}
    assert all(keys <= set(item) for item in items)
    root = next(i for i in items if i["event_id"] == world["root"]["event_id"])
    assert root["body"] == "hello edited world" and root["edited"]
    assert root["reactions"] == {"🎉": 1} and root["reply_count"] == 1
    assert root["thread_root"] == root["event_id"]
    assert any(i["redacted"] and i["body"] is None for i in items)
    assert "soon gone" not in result.out


def test_log_paging_and_limits(cli: Any, world: dict[str, Any]) -> None:
    newest = json.loads(cli("log", ROOM, "--json", "--limit", "3", *world["flags"]).out)
    assert [i["body"] for i in newest] == ["filler 5", "filler 6", "filler 7"]
    older = json.loads(
        cli("log", ROOM, "--json", "--limit", "2", "--before", newest[0]["event_id"],
            *world["flags"]).out
    )
    assert [i["body"] for i in older] == ["filler 3", "filler 4"]
    assert cli("log", ROOM, "--limit", "0", *world["flags"]).code == 2
    assert cli("log", ROOM, "--before", "other::x::y", *world["flags"]).code == 2
    assert cli("log", "no-such-room", *world["flags"]).code == 2
    assert cli("log", ROOM, "--since", "yesterday", *world["flags"]).code == 2


def test_log_renders_text_literally(cli: Any, world: dict[str, Any]) -> None:
    result = cli("log", ROOM, *world["flags"])
    assert result.code == 0, result.err
    assert "[bold red]not markup[/]" in result.out
    for control in ("\x1b", "\x07", "\r", "\x08", "\u202e"):
        assert control not in result.out
    assert "hello edited world" in result.out and "(edited)" in result.out
    assert "message deleted" in result.out
    assert "🎉 1" in result.out and "1 reply" in result.out
    assert "Thursday 1 January 2026" in result.out
    assert "tofu" in result.out


def test_thread_from_any_event(cli: Any, world: dict[str, Any]) -> None:
    for start in (world["root"]["event_id"], world["reply"]["event_id"]):
        result = cli("thread", start, "--json", *world["flags"])
        assert result.code == 0, result.err
        found = json.loads(result.out)
        assert found["root"] == world["root"]["event_id"]
        assert [(e["body"], e["depth"]) for e in found["events"]] == [
            ("hello edited world", 0), ("a reply", 1)
        ]
    human = cli("thread", world["reply"]["event_id"], *world["flags"])
    assert "a reply" in human.out
    assert cli("thread", "general::nope::nope", *world["flags"]).code == 2


def test_search_json_and_text(cli: Any, world: dict[str, Any]) -> None:
    result = cli("search", "hello", "--json", *world["flags"])
    assert result.code == 0, result.err
    hits = json.loads(result.out)
    assert [h["body"] for h in hits] == ["hello edited world"]
    assert set(hits[0]) >= {"event_id", "room_id", "sender_id", "timestamp_ms", "body",
                            "snippet", "score"}
    assert json.loads(cli("search", "gone", "--json", *world["flags"]).out) == []
    filtered = json.loads(cli("search", "filler", "--sender", "carol", "--limit", "3",
                              "--json", *world["flags"]).out)
    assert len(filtered) == 3
    text = cli("search", "markup", *world["flags"])
    assert "\x1b" not in text.out and "[bold red]" in text.out
    assert cli("search", "is:nonsense", *world["flags"]).code == 2


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("jsonl", "o.jsonl"), ("parquet", "o.parquet"), ("csv", "o.csv"), ("markdown", "o.md"),
     ("html", "o.html"), ("bundle", "o-bundle")],
)
def test_export_every_format(cli: Any, world: dict[str, Any], fmt: str, name: str) -> None:
    output = world["tmp"] / name
    result = cli("export", ROOM, "--format", fmt, "--output", str(output), *world["flags"])
    assert result.code == 0, result.err
    assert output.exists()
    text = (
        "".join(p.read_text("utf-8", "replace") for p in output.rglob("*") if p.is_file())
        if output.is_dir() else output.read_bytes().decode("utf-8", "replace")
    )
    assert "soon gone" not in text


def test_export_usage_errors(cli: Any, world: dict[str, Any]) -> None:
    out = str(world["tmp"] / "x")
    assert cli("export", "--format", "jsonl", "-o", out, *world["flags"]).code == 2
    assert cli("export", ROOM, "--all", "--format", "jsonl", "-o", out, *world["flags"]).code == 2
    assert cli("export", ROOM, "--format", "pdf", "-o", out, *world["flags"]).code == 2


def test_verify_ok_and_tampered(cli: Any, world: dict[str, Any]) -> None:
    bundle = world["tmp"] / "bundle"
    assert cli("export", "--all", "--format", "bundle", "-o", str(bundle),
               *world["flags"]).code == 0
    ok = cli("verify", str(bundle), "--json")
    assert ok.code == 0, ok.out
    document = json.loads(ok.out)
    assert document["ok"] is True
    assert set(document["rooms"][0]) == {"room_id", "events", "digest", "digest_matches"}
    events = bundle / "rooms" / ROOM / "events.jsonl"
    events.write_text(events.read_text("utf-8").replace("a reply", "a forged reply"), "utf-8")
    bad = cli("verify", str(bundle))
    assert bad.code == 1
    assert "FAILED" in bad.out


def test_read_commands_are_fast_to_start(world: dict[str, Any]) -> None:
    """The read modules keep duckdb, pyarrow and tantivy out of start-up."""
    code = (
        "import sys, bucketchat, bucketchat.cli.read, bucketchat.cli.main; "
        "heavy = [m for m in ('duckdb', 'pyarrow', 'tantivy', 'bucketchat.api') "
        "if m in sys.modules]; print(heavy)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


def test_core_modules_never_import_rich() -> None:
    code = (
        "import sys, bucketchat.projections.timeline.read, "
        "bucketchat.projections.timeline.refresh, bucketchat.projections.search.index, "
        "bucketchat.projections.search.searcher, bucketchat.export, "
        "bucketchat.export.html, bucketchat.export.bundle, bucketchat.audit.bundle, "
        "bucketchat.session, bucketchat.present, bucketchat.api; "
        "print([m for m in ('rich', 'typer') if m in sys.modules])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"
