"""bucketchat: serverless chat in a bucket.

The Python API (``connect``, ``timeline``, ``thread``, ``search``) lives in
``bucketchat.api`` and is loaded on first use, so ``import bucketchat`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucketchat.api import connect, search, thread, timeline

__all__ = ["connect", "search", "thread", "timeline"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bucketchat import api

        return getattr(api, name)
    raise AttributeError(f"module 'bucketchat' has no attribute {name!r}")
