"""Keys and chains come out the same whatever order files arrive in, across syncs (§5, §7).

A room's files are delivered in many orders, split over several syncs; the final events,
trust and findings always equal one sync of everything. And the single steps: a late
predecessor heals a chain_gap, a late key verifies events stored as unverified, and a
pinned key outranks a key that introduced itself first.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    MALLORY,
    Author,
    events_set,
    findings_list,
    query,
    seed_of,
    trust_map,
    write_events,
)

from bucketchat import keystore
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket

CAROL = "carol@example.com"
DAVE = "dave@example.com"


def carol_real() -> Author:
    return Author(CAROL, hashlib.sha256(b"carol's real device").digest())


def carol_impostor() -> Author:
    return Author(CAROL, seed_of(MALLORY))  # mallory's key, claiming to be carol


def room_files(source: Path) -> dict[str, Path]:
    """Named files of room 'ord' (written to ``source``)."""
    alice, bob, carol, fake = Author.of(ALICE), Author.of(BOB), carol_real(), carol_impostor()
    dave = Author(DAVE, hashlib.sha256(b"dave").digest())
    t = BASE_MS
    files: dict[str, Path] = {}

    def put(name: str, author: Author, events: list[dict[str, Any]]) -> None:
        files[name] = write_events(source, "ord", events, author.client_id)

    put("X1", fake, [fake.join("ord", t + 1), fake.message("ord", t + 2, "I am carol")])
    put("A1", alice, [alice.join("ord", t + 10), alice.message("ord", t + 11, "a1")])
    put("A2", alice, [alice.message("ord", t + 20, "a2")])
    put("A3", alice, [alice.message("ord", t + 30, "a3"), alice.message("ord", t + 31, "a4")])
    put("B1", bob, [bob.join("ord", t + 12)])
    put("B2", bob, [bob.message("ord", t + 21, "b1"), bob.message("ord", t + 32, "b2")])
    put("C1", carol, [carol.join("ord", t + 40), carol.message("ord", t + 41, "really me")])
    put("C2", carol, [carol.message("ord", t + 50, "still me")])
    put("D1", dave, [dave.message("ord", t + 60, "no key ever")])  # stays unverified
    return files


def deliver(source: Path, root: Path, path: Path) -> None:
    target = root / path.relative_to(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)


def state(cache: Path) -> tuple[Any, ...]:
    return events_set(cache), trust_map(cache), findings_list(cache)


def by_body(cache: Path) -> dict[str, str]:
    rows = query(cache, "SELECT json_extract_string(content, '$.body'), trust FROM events")
    return {body: trust for body, trust in rows if body is not None}


def kinds(cache: Path) -> dict[str, int]:
    return dict(query(cache, "SELECT kind, count(*) FROM findings GROUP BY kind"))


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path / "source"
    return folder, room_files(folder)


PINNED = {CAROL: [carol_real().public_key]}


def test_the_reference_outcome(source: tuple[Path, dict[str, Path]], tmp_path: Path):
    folder, _ = source
    cache = tmp_path / "all.duckdb"
    sync_bucket(LocalBucket(folder), cache, pinned=PINNED)
    assert by_body(cache) == {
        "I am carol": "invalid",
        "a1": "tofu",
        "a2": "tofu",
        "a3": "tofu",
        "a4": "tofu",
        "b1": "tofu",
        "b2": "tofu",
        "really me": "attested",
        "still me": "attested",
        "no key ever": "unverified",
    }
    assert kinds(cache) == {"key_conflict": 1, "bad_signature": 1, "unknown_key": 1}
    conflict = query(cache, "SELECT sender_id, event_id FROM findings WHERE kind = 'key_conflict'")
    assert conflict[0][0] == CAROL


@pytest.mark.slow
def test_any_delivery_order_gives_the_same_events_trust_and_findings(
    source: tuple[Path, dict[str, Path]], tmp_path: Path
):
    folder, files = source
    reference = tmp_path / "reference.duckdb"
    sync_bucket(LocalBucket(folder), reference, pinned=PINNED)
    expected = state(reference)

    names = sorted(files)
    rng = random.Random(2026)
    orders = [names, names[::-1]] + [rng.sample(names, len(names)) for _ in range(8)]
    for number, order in enumerate(orders):
        root, cache = tmp_path / f"bucket{number}", tmp_path / f"cache{number}.duckdb"
        cuts = sorted(rng.sample(range(1, len(order)), rng.randint(1, 4)))
        groups = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
        for group in groups:
            for name in group:
                deliver(folder, root, files[name])
            sync_bucket(LocalBucket(root), cache, pinned=PINNED)
        assert state(cache) == expected, f"order {groups}"


def test_a_predecessor_arriving_later_heals_a_chain_gap(
    source: tuple[Path, dict[str, Path]], tmp_path: Path
):
    folder, files = source
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    for name in ("A1", "A3"):
        deliver(folder, root, files[name])
    report = sync_bucket(LocalBucket(root), cache)
    assert report.findings == {"chain_gap": 1}
    gap = query(cache, "SELECT event_id, sender_id FROM findings WHERE kind = 'chain_gap'")
    a3_first = query(cache, "SELECT event_id FROM events WHERE content->>'body' = 'a3'")
    assert gap == [(a3_first[0][0], ALICE)]
    assert set(by_body(cache).values()) == {"tofu"}

    deliver(folder, root, files["A2"])
    sync_bucket(LocalBucket(root), cache)
    assert kinds(cache) == {}
    assert set(by_body(cache)) == {"a1", "a2", "a3", "a4"}


def test_a_key_arriving_later_verifies_events_stored_as_unverified(
    source: tuple[Path, dict[str, Path]], tmp_path: Path
):
    folder, files = source
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    deliver(folder, root, files["B2"])
    report = sync_bucket(LocalBucket(root), cache)
    assert report.findings == {"unknown_key": 2}
    assert by_body(cache) == {"b1": "unverified", "b2": "unverified"}
    assert query(cache, "SELECT count(*) FROM events WHERE signer_key IS NOT NULL") == [(0,)]

    deliver(folder, root, files["B1"])
    report = sync_bucket(LocalBucket(root), cache)
    assert report.events_ingested == 1
    assert by_body(cache) == {"b1": "tofu", "b2": "tofu"}
    assert kinds(cache) == {}
    signers = query(cache, "SELECT DISTINCT signer_key FROM events")
    assert signers == [(Author.of(BOB).public_key,)]


def test_a_late_key_verifies_the_authentic_copy_of_an_event_and_not_a_forged_one(
    tmp_path: Path,
):
    """Two copies of one event (one hash, two signatures) stored before the sender's key:
    when the key arrives, only the copy it verifies gains a signer."""
    from test_sync_support import sign

    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    bob = Author.of(BOB)
    join = bob.join("alpha", BASE_MS)
    message = bob.message("alpha", BASE_MS + 10, "the real one")
    unsigned = {key: value for key, value in message.items() if key != "signature"}
    forged = sign(unsigned, seed_of(MALLORY))
    write_events(root, "alpha", [message, forged], bob.client_id, name=None)
    sync_bucket(LocalBucket(root), cache)
    assert query(cache, "SELECT count(*) FROM event_rows WHERE signer_key IS NULL") == [(2,)]

    write_events(root, "alpha", [join], bob.client_id)
    sync_bucket(LocalBucket(root), cache)
    rows = query(
        cache, "SELECT signature, signer_key, trust FROM events WHERE type = 'm.room.message'"
    )
    assert sorted(rows, key=lambda row: row[1] is None) == [
        (message["signature"], bob.public_key, "tofu"),
        (forged["signature"], None, "invalid"),
    ]
    assert kinds(cache).get("bad_signature") == 1


@pytest.mark.parametrize("pool_rows", [2, 1_000], ids=["workers", "here"])
def test_a_late_key_verifies_a_backlog_a_chunk_at_a_time(
    pool_rows: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Events verified again when their key arrives are read a chunk at a time (chunks
    of 3 here), and verified on the workers when a chunk is big enough."""
    from bucketchat.sync import keys as sync_keys

    monkeypatch.setattr(sync_keys, "LATE_CHUNK_ROWS", 3)
    monkeypatch.setattr(sync_keys, "LATE_POOL_ROWS", pool_rows)
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    bob = Author.of(BOB)
    join = bob.join("alpha", BASE_MS)
    messages = [bob.message("alpha", BASE_MS + 10 * n, f"m{n}") for n in range(1, 11)]
    write_events(root, "alpha", messages, bob.client_id)
    sync_bucket(LocalBucket(root), cache)
    assert set(by_body(cache).values()) == {"unverified"}

    write_events(root, "alpha", [join], bob.client_id)
    sync_bucket(LocalBucket(root), cache)
    assert by_body(cache) == {f"m{n}": "tofu" for n in range(1, 11)}
    assert query(cache, "SELECT count(*) FROM event_rows WHERE signer_key IS NULL") == [(0,)]
    assert kinds(cache) == {}


READ_EVENTS = """
import sys
from pathlib import Path
from bucketchat.cache import open_cache
with open_cache(Path(sys.argv[1]), read_only=True, wait_seconds=0.5) as cache:
    print(cache.one("SELECT count(*) FROM event_rows")[0])
"""


@pytest.mark.parametrize("arrival", ["published", "pinned"])
def test_the_cache_is_free_while_a_late_key_verifies_a_backlog(
    arrival: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Verifying a backlog again can take long; readers must not wait for it. Two rooms
    of nine events each, verified three at a time (so a chunk exactly fills the last
    read), when bob's joins arrive or when his key is pinned (every room then)."""
    import subprocess
    import sys

    from test_sync_support import PROJECT

    from bucketchat.sync import keys as sync_keys

    monkeypatch.setattr(sync_keys, "LATE_CHUNK_ROWS", 3)
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    bob = Author.of(BOB)
    for room in ("alpha", "beta"):
        backlog = [bob.message(room, BASE_MS + 10 * n, f"{room}{n}") for n in range(1, 10)]
        write_events(root, room, backlog, bob.client_id)
    sync_bucket(LocalBucket(root), cache, workers=1)
    assert set(by_body(cache).values()) == {"unverified"}
    pinned: dict[str, list[str]] = {}
    if arrival == "published":
        for room in ("alpha", "beta"):
            write_events(root, room, [bob.join(room, BASE_MS)], bob.client_id)
    else:
        pinned = {BOB: [bob.public_key]}

    readers: list[subprocess.CompletedProcess[str]] = []
    real_verify_again = sync_keys.verify_again

    def verify_while_reading(*args: Any) -> Any:
        command = [sys.executable, "-c", READ_EVENTS, str(cache)]
        readers.append(
            subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=60)
        )
        return real_verify_again(*args)

    monkeypatch.setattr(sync_keys, "verify_again", verify_while_reading)
    sync_bucket(LocalBucket(root), cache, workers=1, pinned=pinned)
    assert len(readers) == 6  # three chunks a room, each verified once, none in the keys step
    assert [(r.returncode, r.stderr) for r in readers] == [(0, "")] * 6
    assert "unverified" not in set(by_body(cache).values())
    assert query(cache, "SELECT count(*) FROM event_rows WHERE signer_key IS NULL") == [(0,)]


def test_a_pinned_key_outranks_a_key_that_came_first(
    source: tuple[Path, dict[str, Path]], tmp_path: Path
):
    folder, files = source
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    for name in ("X1", "C1", "C2"):
        deliver(folder, root, files[name])

    sync_bucket(LocalBucket(root), cache, pinned=keystore.pinned_keys())  # nothing pinned yet
    assert by_body(cache) == {"I am carol": "tofu", "really me": "invalid", "still me": "invalid"}
    conflicts = query(cache, "SELECT public_key FROM keys WHERE status = 'conflict'")
    assert conflicts == [(carol_real().public_key,)]

    assert keystore.pin_key(CAROL, carol_real().public_key)
    report = sync_bucket(LocalBucket(root), cache, pinned=keystore.pinned_keys())
    assert report.files_ingested == 0  # nothing new: the pin alone re-decides the room
    assert by_body(cache) == {
        "I am carol": "invalid",
        "really me": "attested",
        "still me": "attested",
    }
    keys = query(cache, "SELECT public_key, status, trust, pinned FROM keys ORDER BY status")
    assert keys == [
        (carol_real().public_key, "accepted", "attested", True),
        (carol_impostor().public_key, "conflict", None, False),
    ]
    assert kinds(cache) == {"key_conflict": 1, "bad_signature": 1}

    # a fresh cache with the pin from the start says the same, in any order of arrival
    other_root, other = tmp_path / "other", tmp_path / "other.duckdb"
    for name in ("C2", "X1", "C1"):
        deliver(folder, other_root, files[name])
        sync_bucket(LocalBucket(other_root), other, pinned=keystore.pinned_keys())
    assert by_body(other) == by_body(cache)
    assert findings_list(other) == findings_list(cache)


def test_keys_are_decided_again_only_where_they_can_have_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A room's key decisions follow from its member events that publish keys and from
    pinned keys: a sync that adds only messages (and nothing is pinned) leaves them."""
    from bucketchat.sync import keys as sync_keys

    decided: list[str] = []
    real_refresh = sync_keys.refresh_room_keys

    def recording(cache: Any, room_id: str, *args: Any) -> None:
        decided.append(room_id)
        real_refresh(cache, room_id, *args)

    monkeypatch.setattr(sync_keys, "refresh_room_keys", recording)
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    write_events(root, "alpha", [alice.join("alpha", BASE_MS)], alice.client_id)
    write_events(root, "beta", [bob.join("beta", BASE_MS)], bob.client_id)
    sync_bucket(LocalBucket(root), cache)
    assert sorted(decided) == ["alpha", "beta"]

    decided.clear()
    write_events(root, "alpha", [alice.message("alpha", BASE_MS + 10, "hi")], alice.client_id)
    sync_bucket(LocalBucket(root), cache)
    assert decided == []
    assert by_body(cache) == {"hi": "tofu"}

    pins = {ALICE: [alice.public_key]}
    sync_bucket(LocalBucket(root), cache, pinned=pins)  # a new pin: every room
    assert sorted(decided) == ["alpha", "beta"]

    decided.clear()
    write_events(root, "beta", [alice.message("beta", BASE_MS + 20, "pinned")], alice.client_id)
    sync_bucket(LocalBucket(root), cache, pinned=pins)  # a pinned sender may be new to the room
    assert decided == ["beta"]
    assert by_body(cache)["pinned"] == "attested"  # a pinned key's trust


def test_keys_a_dead_sync_left_undecided_are_decided_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A sync that stored member events and died before deciding the room's keys, while
    another sync set the keys fingerprint again: the next sync, though it brings no key
    event, decides that room, because its key events are not the ones last decided from."""
    from bucketchat.cache import open_cache
    from bucketchat.sync import keys as sync_keys

    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    write_events(root, "alpha", [alice.join("alpha", BASE_MS)], alice.client_id)
    sync_bucket(LocalBucket(root), cache)
    with open_cache(cache, read_only=True) as opened:
        fingerprint = opened.meta("keys_fingerprint")
    assert fingerprint

    bob_events = [bob.join("alpha", BASE_MS + 5), bob.message("alpha", BASE_MS + 6, "bob here")]
    write_events(root, "alpha", bob_events, bob.client_id)

    def dies(*args: Any) -> None:
        raise RuntimeError("killed while deciding keys")

    with monkeypatch.context() as patched:
        patched.setattr(sync_keys, "refresh_room_keys", dies)
        with pytest.raises(RuntimeError):
            sync_bucket(LocalBucket(root), cache)
    with open_cache(cache) as opened:  # the other sync's keys step, finishing meanwhile
        assert opened.meta("keys_fingerprint") is None
        opened.set_meta("keys_fingerprint", fingerprint)
    assert by_body(cache)["bob here"] == "unverified"

    write_events(root, "alpha", [alice.message("alpha", BASE_MS + 9, "later")], alice.client_id)
    sync_bucket(LocalBucket(root), cache)
    assert by_body(cache) == {"bob here": "tofu", "later": "tofu"}


def test_a_sync_names_the_steps_after_reading(tmp_path: Path):
    """For a progress display: the steps a sync takes once its files are read, in order;
    a sync with nothing to do takes none."""
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    write_events(root, "alpha", [alice.join("alpha", BASE_MS)], alice.client_id)
    steps: list[str] = []
    sync_bucket(LocalBucket(root), cache, stage=steps.append)
    assert steps == [
        "storing",
        "deciding keys",
        "building the timeline",
        "indexing for search, counting findings",
    ]
    steps.clear()
    sync_bucket(LocalBucket(root), cache, stage=steps.append)
    assert steps == []
