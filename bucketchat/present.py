"""What a front end shows, without any UI library: safe text, trust badges, verbs, colours.

The CLI's Rich renderer, the chat (Textual) and the exports all take their words and
marks from here, so an item reads the same everywhere. Styles are Rich style strings,
which Textual understands as well.

Message text is the data of other people. Before it reaches a terminal or an export it
loses every C0/C1 control character (ESC starts terminal sequences; CR and BS overwrite
what was shown), DEL, and the bidirectional overrides and isolates that can make text
read differently from what it is. Newlines and tabs stay where a caller asks for them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufff9-\ufffb]"
)
_LINE_BREAKS = re.compile("[\n\t\u2028\u2029\x85]")


def strip_controls(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without control characters; newlines and tabs kept unless told otherwise."""
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    cleaned = _CONTROLS.sub("", text)
    if not keep_newlines:
        return _LINE_BREAKS.sub(" ", cleaned)
    return cleaned.replace("\t", "    ")


def one_line(text: str) -> str:
    """``text`` on one line, controls removed (for ids, names and snippets)."""
    return strip_controls(text, keep_newlines=False)


# --- marks and words --------------------------------------------------------------------


class Badge(NamedTuple):
    label: str
    style: str


TRUST_BADGES = {
    "attested": Badge("✔ attested", "bold green"),
    "tofu": Badge("tofu", "dim cyan"),
    "unverified": Badge("? unverified", "yellow"),
    "invalid": Badge("✗ invalid", "bold red"),
}
MEMBER_VERBS = {
    "join": "joined",
    "leave": "left",
    "invite": "invited someone",
    "ban": "banned someone",
    "kick": "removed someone",
}
SENDER_COLOURS = (
    "cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan",
    "bright_magenta", "bright_green", "dark_orange", "orchid", "spring_green3",
)


def trust_badge(trust: str) -> Badge:
    """The badge of a trust level; anything unknown shows as invalid."""
    return TRUST_BADGES.get(trust, TRUST_BADGES["invalid"])


def member_verb(membership: str | None) -> str:
    return MEMBER_VERBS.get(membership or "", "changed membership")


def member_text(item: dict[str, Any]) -> str:
    """What a member event says: "joined as Alice", "left", …"""
    text = member_verb(item.get("membership"))
    name = item.get("displayname")
    if name and item.get("membership") == "join":
        text += f" as {one_line(name)}"
    return text


def sender_style(sender_id: str) -> str:
    """A colour per sender, the same in every front end and every run."""
    digest = hashlib.sha256(sender_id.encode("utf-8")).digest()
    return f"bold {SENDER_COLOURS[digest[0] % len(SENDER_COLOURS)]}"


def sender_hue(sender_id: str) -> int:
    """A hue (0-359) per sender, for outputs that colour by hue (HTML)."""
    return int(hashlib.sha256(sender_id.encode("utf-8")).hexdigest()[:4], 16) % 360


def short_id(event_id: str) -> str:
    """The first characters of an event id's unique part, for people to read and type."""
    return one_line(event_id.rsplit("::", 1)[-1][:8])


def replies_text(count: int) -> str:
    return f"{count} {'reply' if count == 1 else 'replies'}"


# --- times ------------------------------------------------------------------------------


def clock(timestamp_ms: int) -> str:
    """HH:MM, UTC."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%H:%M")


def day(timestamp_ms: int) -> str:
    """The day of a day separator: "Monday 5 January 2026", UTC."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%A %-d %B %Y")
