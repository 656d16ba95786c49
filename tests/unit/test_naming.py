"""Names in a bucket (PROTOCOL.md §1, §3): client ids, log file keys, room ids, event ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bucketchat.errors import BadIdentifier
from bucketchat.protocol.naming import (
    CLIENT_ID,
    LogFileName,
    check_room_id,
    client_id_for,
    event_id_room,
    event_time,
    is_room_id,
    log_file_path,
    metadata_path,
    new_event_id,
    parse_bucket_key,
    utc_day,
)
from bucketchat.protocol.signing import SigningKey, fingerprint

FP = fingerprint(SigningKey(bytes(range(32))).public_key)
MAX_YEAR_9999_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


# --- client ids ---------------------------------------------------------------------------


def test_fingerprint_is_hex_sha256() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", FP)


def test_client_id_from_email() -> None:
    assert client_id_for("alice@example.com", FP) == "alice_" + FP[:6]


def test_client_id_from_matrix_style_id_takes_the_part_after_the_last_colon() -> None:
    assert client_id_for("@bob:matrix.org", FP) == "matrix_org_" + FP[:6]
    assert client_id_for("oidc:https://issuer:carol", FP) == "carol_" + FP[:6]


def test_client_id_of_a_plain_id() -> None:
    assert client_id_for("dave", FP) == "dave_" + FP[:6]


def test_client_id_cut_to_48() -> None:
    long_id = "x" * 100 + "@example.com"
    assert client_id_for(long_id, FP) == "x" * 48 + "_" + FP[:6]
    assert client_id_for("@s:" + "y" * 80, FP) == "y" * 48 + "_" + FP[:6]


@pytest.mark.parametrize(
    ("sender", "local"),
    [
        ("al.ice+tag@example.com", "al_ice_tag"),
        ("j\u00fcrgen@example.de", "j_rgen"),
        ("\U0001f600@example.com", "_"),
        ("a b-c@example.com", "a_b_c"),
        ("@bob:server", "server"),
    ],
)
def test_client_id_odd_characters_replaced(sender: str, local: str) -> None:
    assert client_id_for(sender, FP) == f"{local}_{FP[:6]}"


def test_two_devices_of_one_user_get_different_names() -> None:
    other = fingerprint(SigningKey(bytes(32)).public_key)
    assert FP[:6] != other[:6]
    assert client_id_for("alice@example.com", FP) != client_id_for("alice@example.com", other)


@pytest.mark.parametrize("client", ["alice\n", "", "a-b", "x" * 65, "\u0661"])
def test_client_id_pattern_is_a_full_ascii_match(client: str) -> None:
    assert not CLIENT_ID.match(client)


@given(st.text(max_size=300))
def test_client_id_always_valid(sender: str) -> None:
    client = client_id_for(sender, FP)
    assert CLIENT_ID.fullmatch(client)
    assert len(client) <= 48 + 1 + 6
    assert client.endswith("_" + FP[:6])


# --- room ids and event ids ---------------------------------------------------------------


@pytest.mark.parametrize("room", ["a", "vectors", "A-b_c.d", "0", "x" * 128])
def test_good_room_ids(room: str) -> None:
    assert is_room_id(room)
    assert check_room_id(room) == room


@pytest.mark.parametrize(
    "room",
    ["", ".", "..", ".hidden", "-x", "_x", "a b", "a/b", "x" * 129, "caf\u00e9", "a\n", "\u0661"],
)
def test_bad_room_ids(room: str) -> None:
    assert not is_room_id(room)
    with pytest.raises(BadIdentifier):
        check_room_id(room)


def test_new_event_id_has_three_parts() -> None:
    event_id = new_event_id("room", 1767225600123)
    room, moment, unique = event_id.split("::")
    assert room == "room" == event_id_room(event_id)
    assert moment == "20260101T000000.123Z"
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(uuid4, unique)
    assert new_event_id("room", 0) != new_event_id("room", 0)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "19700101T000000.000Z"),
        (999, "19700101T000000.999Z"),
        (1767225599999, "20251231T235959.999Z"),
        (MAX_YEAR_9999_MS, "99991231T235959.999Z"),
    ],
)
def test_event_time(ms: int, text: str) -> None:
    assert event_time(ms) == text


@given(st.integers(min_value=0, max_value=MAX_YEAR_9999_MS))
def test_utc_day_is_the_date_of_the_millisecond(ms: int) -> None:
    day = utc_day(ms)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day)
    assert event_time(ms).startswith(day.replace("-", ""))
    # the last millisecond of a day and the first of the next differ
    start_of_day = ms - ms % 86_400_000
    assert utc_day(start_of_day) == day
    assert utc_day(start_of_day + 86_399_999) == day


# --- log file keys ------------------------------------------------------------------------


def test_log_file_path() -> None:
    key = log_file_path("vectors", 1767225600000, 1767225608000, "alice_7f3a2c")
    assert key == (
        "rooms/vectors/logs/2026-01-01/messages_1767225600000_1767225608000_alice_7f3a2c.jsonl"
    )
    assert parse_bucket_key(key) == LogFileName(
        "vectors", "2026-01-01", 1767225600000, 1767225608000, "alice_7f3a2c"
    )


def test_log_file_path_rejects_bad_client_id() -> None:
    with pytest.raises(BadIdentifier):
        log_file_path("r", 0, 0, "bad-client")
    with pytest.raises(BadIdentifier):
        log_file_path("r", 0, 0, "x" * 65)


ROOMS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
CLIENTS = st.from_regex(r"[A-Za-z0-9_]{1,64}", fullmatch=True)
TIMES = st.integers(min_value=0, max_value=MAX_YEAR_9999_MS)


@given(ROOMS, TIMES, TIMES, CLIENTS)
def test_log_file_path_round_trips(room: str, start: int, end: int, client: str) -> None:
    start, end = min(start, end), max(start, end)
    key = log_file_path(room, start, end, client)
    assert parse_bucket_key(key) == LogFileName(room, utc_day(start), start, end, client)


def test_metadata_key() -> None:
    assert metadata_path("r") == "rooms/r/metadata.json"
    assert parse_bucket_key("rooms/r/metadata.json") == "metadata"


GOOD_FILE = "messages_1_2_alice_7f3a2c.jsonl"


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (f"rooms/../logs/2026-01-01/{GOOD_FILE}", "room folder"),
        (f"rooms/./logs/2026-01-01/{GOOD_FILE}", "room folder"),
        (f"rooms/my room/logs/2026-01-01/{GOOD_FILE}", "room folder"),
        (f"rooms/.hidden/logs/2026-01-01/{GOOD_FILE}", "room folder"),
        (f"rooms//logs/2026-01-01/{GOOD_FILE}", "room folder"),
        (f"rooms/{'x' * 129}/logs/2026-01-01/{GOOD_FILE}", "room folder"),
        ("rooms/..", "room folder"),
        (f"rooms/r/logs/2026-1-01/{GOOD_FILE}", "day folder"),
        (f"rooms/r/logs/20260101/{GOOD_FILE}", "day folder"),
        (f"rooms/r/logs/2026-01-01x/{GOOD_FILE}", "day folder"),
        (f"rooms/r/logs/today/{GOOD_FILE}", "day folder"),
        (f"rooms/r/logs/2026-01-01\n/{GOOD_FILE}", "day folder"),
        ("rooms/r/logs/2026-01-01/messages_1_2.jsonl", "file name"),
        ("rooms/r/logs/2026-01-01/messages_1_2_alice.json", "file name"),
        ("rooms/r/logs/2026-01-01/messages_a_2_alice.jsonl", "file name"),
        ("rooms/r/logs/2026-01-01/messages_1_2_al-ice.jsonl", "file name"),
        ("rooms/r/logs/2026-01-01/messages_1_2_alice.jsonl.tmp", "file name"),
        ("rooms/r/logs/2026-01-01/messages_1_2_alice.jsonl\n", "file name"),
        ("rooms/r/logs/2026-01-01/msg_1_2_alice.jsonl", "file name"),
        (f"rooms/r/logs/2026-01-01/messages_1_2_{'a' * 65}.jsonl", "file name"),
        ("rooms/r/logs/2026-01-01/messages_12345678901234567_2_alice.jsonl", "file name"),
        ("rooms/r/logs/2026-01-01/messages_\u0661_2_alice.jsonl", "file name"),  # Arabic 1
        ("rooms/r/logs/\u0662\u0660\u0662\u0666-01-01/" + GOOD_FILE, "day folder"),
        (f"rooms/r/logs/{GOOD_FILE}", "not rooms/"),
        (f"rooms/r/logs/2026-01-01/sub/{GOOD_FILE}", "not rooms/"),
        (f"rooms/r/other/2026-01-01/{GOOD_FILE}", "not rooms/"),
        ("rooms/r/notes.txt", "not rooms/"),
        ("rooms/r", "not rooms/"),
        ("rooms", "outside rooms/"),
        (f"other/r/logs/2026-01-01/{GOOD_FILE}", "outside rooms/"),
    ],
)
def test_parse_bucket_key_rejects(key: str, why: str) -> None:
    result = parse_bucket_key(key)
    assert isinstance(result, str)
    assert result != "metadata"
    assert why in result


def test_parse_bucket_key_accepts_underscores_and_digits_in_client_id() -> None:
    key = "rooms/r/logs/2026-01-01/messages_1_2_3_4_5.jsonl"
    assert parse_bucket_key(key) == LogFileName("r", "2026-01-01", 1, 2, "3_4_5")
