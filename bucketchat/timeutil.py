"""Time: protocol milliseconds, naive-UTC bookkeeping timestamps, and user time arguments.

The cache stores ``_at`` columns as naive UTC ``TIMESTAMP`` so that no time-zone database
is needed to read them back; ``_ms`` values are protocol time (PROTOCOL.md §3).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from bucketchat.errors import UsageError


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_time_arg(text: str, *, end_of_day: bool = False) -> int:
    """An ISO 8601 date or date-time (UTC unless it has an offset) as protocol ms.

    A date alone as an upper bound includes that whole day (CLI.md).
    """
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end_of_day:
                moment += timedelta(days=1) - timedelta(milliseconds=1)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"{text!r} is not an ISO 8601 date or date-time") from exc
    return int(moment.timestamp() * 1000)


def format_ms(timestamp_ms: int) -> str:
    """A protocol time for people: UTC, to the second."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
