"""Per-device hash chains (PROTOCOL.md §7) as a pure function of one chain's events.

A chain is the verified events of one (room, sender, signing key). ``chain_findings``
reports every gap, fork, unchained chain and timestamp regression with the event that
shows it, one finding per chain link, independent of the order events arrived in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChainLink:
    event_hash: str
    prev_event_hash: str | None
    timestamp_ms: int
    event_id: str

    @property
    def order(self) -> tuple[int, str, str]:
        return (self.timestamp_ms, self.event_id, self.event_hash)


@dataclass(frozen=True)
class ChainFinding:
    kind: str  # chain_gap | chain_fork | unchained | timestamp_regression
    event_hash: str
    event_id: str
    detail: str


def chain_findings(links: Iterable[ChainLink]) -> list[ChainFinding]:
    events = sorted({link.event_hash: link for link in links}.values(), key=lambda e: e.order)
    by_hash = {link.event_hash: link for link in events}
    findings: list[ChainFinding] = []
    firsts = [link for link in events if link.prev_event_hash is None]
    linked = [link for link in events if link.prev_event_hash is not None]

    if len(events) >= 2 and not linked:
        head = events[0]
        findings.append(
            ChainFinding("unchained", head.event_hash, head.event_id,
                         f"{len(events)} events with no prev_event_hash (a client without chains)")
        )
        return findings

    successors: dict[str, list[ChainLink]] = defaultdict(list)
    for link in linked:
        prev = link.prev_event_hash
        assert prev is not None
        predecessor = by_hash.get(prev)
        if predecessor is None:
            findings.append(
                ChainFinding("chain_gap", link.event_hash, link.event_id,
                             f"prev_event_hash {prev} names no event of this chain")
            )
            continue
        successors[prev].append(link)
        if link.timestamp_ms < predecessor.timestamp_ms:
            findings.append(
                ChainFinding("timestamp_regression", link.event_hash, link.event_id,
                             f"timestamp goes back {predecessor.timestamp_ms - link.timestamp_ms}"
                             " ms from its predecessor")
            )
    for prev, children in successors.items():
        for child in children[1:]:
            findings.append(
                ChainFinding("chain_fork", child.event_hash, child.event_id,
                             f"a second event after {prev} (first: {children[0].event_id})")
            )
    if linked and len(firsts) >= 2:
        for extra in firsts[1:]:
            findings.append(
                ChainFinding("chain_fork", extra.event_hash, extra.event_id,
                             f"a second first event (first: {firsts[0].event_id})")
            )
    return findings


def chain_problems(findings: Iterable[ChainFinding]) -> list[str]:
    """The short names ``audit`` lists for a chain: gap, fork, unchained, regression."""
    names = {
        "chain_gap": "gap",
        "chain_fork": "fork",
        "unchained": "unchained",
        "timestamp_regression": "regression",
    }
    return sorted({names[finding.kind] for finding in findings})
