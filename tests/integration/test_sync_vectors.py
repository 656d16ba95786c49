"""The shared vector bucket gives exactly bucket-expected.json; a second sync does nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    FIXTURES,
    PROJECT,
    Author,
    bucketchat,
    events_set,
    findings_list,
    seed_of,
    sign,
    write_events,
)

from bucketchat.audit.report import audit_report
from bucketchat.cache import open_cache
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from bucketchat.sync import reader

EXPECTED: dict[str, Any] = json.loads((FIXTURES / "bucket-expected.json").read_text())


@pytest.fixture
def vector_bucket(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    shutil.copytree(FIXTURES / "bucket", root)
    return root


def _match_findings(expected: list[list[Any]], actual: list[tuple[str, str | None]]) -> None:
    """Each expected [kind, id-or-ids-or-null] takes one actual finding; none may be left."""
    left = list(actual)
    for kind, ids in expected:
        allowed = ids if isinstance(ids, list) else [ids]
        match = next((f for f in left if f[0] == kind and f[1] in allowed), None)
        assert match is not None, f"missing finding {kind} {ids}; have {left}"
        left.remove(match)
    assert not left, f"findings beyond bucket-expected.json: {left}"


def test_vector_bucket_gives_exactly_the_expected_report(vector_bucket: Path, tmp_path: Path):
    cache_path = tmp_path / "cache.duckdb"
    report = sync_bucket(LocalBucket(vector_bucket), cache_path)

    assert report.files_scanned == 4
    assert report.files_ingested == 4
    for name, value in EXPECTED["sync"].items():
        assert getattr(report, name) == value, name

    with open_cache(cache_path, read_only=True) as cache:
        audit = audit_report(cache)
        valid = dict(
            cache.rows(
                "SELECT room_id, count(*) FROM events WHERE trust <> 'invalid' GROUP BY room_id"
            )
        )
    digests = {room["room_id"]: room["digest"] for room in audit["rooms"]}
    assert set(digests) == set(EXPECTED["rooms"])
    for room_id, expected in EXPECTED["rooms"].items():
        assert valid.get(room_id, 0) == expected["valid_events"], room_id
        assert digests[room_id] == expected["digest"], room_id
        actual = [(f["kind"], f["event_id"]) for f in audit["findings"] if f["room_id"] == room_id]
        _match_findings(expected["findings"], actual)
    assert all(f["room_id"] in EXPECTED["rooms"] for f in audit["findings"])


def test_vector_bucket_through_the_cli(vector_bucket: Path, tmp_path: Path):
    db = str(tmp_path / "cli.duckdb")
    ran = bucketchat("sync", "--bucket", str(vector_bucket), "--db", db, "--json")
    assert ran.code == 0, ran.err
    counts = json.loads(ran.out)
    for name, value in EXPECTED["sync"].items():
        assert counts[name] == value, name
    assert counts["files_ingested"] == 4

    ran = bucketchat("audit", "--db", db, "--format", "json", "--fail-on", "never")
    assert ran.code == 0, ran.err
    audit = json.loads(ran.out)
    for room in audit["rooms"]:
        assert room["digest"] == EXPECTED["rooms"][room["room_id"]]["digest"]
        assert room["events"] == EXPECTED["rooms"][room["room_id"]]["valid_events"]


def test_a_second_sync_ingests_nothing(vector_bucket: Path, tmp_path: Path):
    cache_path = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), cache_path)
    events, findings = events_set(cache_path), findings_list(cache_path)

    again = sync_bucket(LocalBucket(vector_bucket), cache_path)
    assert again.as_json() | {"seconds": 0} == {
        "files_scanned": 4,
        "files_ingested": 0,
        "events_ingested": 0,
        "events_rejected": 0,
        "duplicates": 0,
        "findings": {},
        "seconds": 0,
    }
    assert events_set(cache_path) == events
    assert findings_list(cache_path) == findings

    ran = bucketchat("sync", "--bucket", str(vector_bucket), "--db", str(cache_path), "--json")
    assert ran.code == 0, ran.err
    counts = json.loads(ran.out)
    assert counts["files_ingested"] == counts["events_ingested"] == 0
    assert counts["events_rejected"] == counts["duplicates"] == 0
    assert counts["findings"] == {}


@pytest.mark.slow
def test_no_change_sync_of_2000_files_reads_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "bucket"
    author = Author.of(ALICE, chained=False)
    for index in range(2000):
        at = BASE_MS + index * 1000
        write_events(root, "many", [author.message("many", at, f"m{index}")], "tiny")
    cache_path = tmp_path / "cache.duckdb"
    first = sync_bucket(LocalBucket(root), cache_path)
    assert first.files_ingested == 2000
    assert first.events_ingested == 2000

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a no-change sync read a file")

    monkeypatch.setattr(reader, "read_file", no_reading)
    monkeypatch.setattr(LocalBucket, "read", no_reading)
    again = sync_bucket(LocalBucket(root), cache_path)
    assert again.files_scanned == 2000
    assert again.files_ingested == 0
    assert again.events_ingested == 0
    assert again.findings == {}


ALL_FINDINGS = "SELECT * FROM findings"
OLD_FINDINGS = "SELECT * FROM old_findings"
SOME_ROOMS = "SELECT * FROM findings_in($rooms::VARCHAR[])"
SOME_ROOMS_FILTERED = (
    "SELECT * FROM findings WHERE room_id IS NULL OR list_contains($rooms, room_id)"
)


def _old_views() -> list[str]:
    """The findings views as migrations 0002 and 0007 wrote them, as temporary views."""
    migrations = PROJECT / "migrations"
    chains = (migrations / "0002_findings.sql").read_text().split("CREATE VIEW findings AS")[0]
    chains = chains.replace("CREATE VIEW chain_findings AS", "CREATE TEMP VIEW old_chains AS")
    findings = (migrations / "0007_findings_id_conflicts.sql").read_text()
    findings = findings.replace(
        "CREATE OR REPLACE VIEW findings AS", "CREATE TEMP VIEW old_findings AS"
    )
    return [chains, findings.replace("FROM chain_findings c", "FROM old_chains c")]


def _conflicts_and_strangers(root: Path) -> None:
    """A room with an event_id shared by two valid events (and so a fork of alice's chain)
    and a sender whose key is not known (unknown_key)."""
    alice, bob = Author.of(ALICE), Author.of(BOB)
    first = alice.message("gamma", BASE_MS + 10, "first")
    unsigned = {key: value for key, value in first.items() if key != "signature"}
    twin = sign({**unsigned, "content": {"body": "a twin", "msgtype": "m.text"}}, seed_of(ALICE))
    events = [alice.join("gamma", BASE_MS), first, twin]
    write_events(root, "gamma", events, alice.client_id)
    write_events(root, "gamma", [bob.message("gamma", BASE_MS + 20, "who?")], bob.client_id)
    (root / "rooms" / "vectors" / "notes.txt").write_text("not a log")


def test_the_room_macros_give_the_findings_of_the_views_they_replace(
    vector_bucket: Path, tmp_path: Path
):
    """findings (the macro over every room, migration 0008) has exactly the rows of the
    views of 0002 and 0007; findings_in(rooms), which a sync counts, exactly the view's
    rows of those rooms and of no room."""
    _conflicts_and_strangers(vector_bucket)
    cache_path = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(vector_bucket), cache_path)
    with open_cache(cache_path) as cache:
        con = cache
        for view in _old_views():
            con.execute(view)

        def rows(query: str, rooms: list[str] | None = None) -> list[str]:
            params = None if rooms is None else {"rooms": rooms}
            return sorted(map(str, con.rows(query, params)))

        kinds = set(con.rows("SELECT DISTINCT room_id, kind FROM findings"))
        expected_kinds = {
            ("faults", "chain_gap"),
            ("faults", "chain_fork"),
            ("faults", "duplicate_event"),
            ("faults", "malformed"),
            ("faults", "room_mismatch"),
            ("gamma", "event_id_conflict"),
            ("gamma", "chain_fork"),
            ("gamma", "unknown_key"),
            ("vectors", "unexpected_file"),
        }
        assert expected_kinds <= kinds, kinds
        assert rows(ALL_FINDINGS) == rows(OLD_FINDINGS)
        rooms = ([], ["faults"], ["gamma"], ["vectors", "gamma"], ["nowhere"])
        for chosen in rooms:
            assert rows(SOME_ROOMS, chosen) == rows(SOME_ROOMS_FILTERED, chosen), chosen
        assert rows(SOME_ROOMS, ["faults"]) != rows(SOME_ROOMS, ["gamma"])


def test_a_sync_reports_the_new_findings_of_its_rooms_only(vector_bucket: Path, tmp_path: Path):
    """The report counts findings before and after in the rooms the sync touches; findings
    already stored elsewhere are not reported again, new ones are."""
    cache_path = tmp_path / "cache.duckdb"
    first = sync_bucket(LocalBucket(vector_bucket), cache_path)
    assert first.findings
    alice = Author.of(ALICE)
    write_events(
        vector_bucket,
        "third",
        [alice.join("third", BASE_MS), alice.message("third", BASE_MS + 5, "hi")],
        alice.client_id,
    )
    quiet = sync_bucket(LocalBucket(vector_bucket), cache_path)
    assert quiet.events_ingested == 2
    assert quiet.findings == {}
    (vector_bucket / "rooms" / "third" / "odd.txt").write_text("x")
    odd = sync_bucket(LocalBucket(vector_bucket), cache_path)
    assert odd.findings == {"unexpected_file": 1}
