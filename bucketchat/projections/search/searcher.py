"""Searching the index: the search syntax as a tantivy query, ranked hits with snippets.

Words rank by BM25 and must all match; filters (``from:``, ``in:``, times, trust,
``has:thread``) are constant-score clauses; a query with no word lists its matches newest
first. Keep one ``Searcher`` for many queries: opening the index costs more than a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.projections.search.index import open_index
from bucketchat.projections.search.syntax import (
    CJK_CHAR,
    ParsedQuery,
    at_least,
    at_most,
    highlight,
    marked,
    parse_query,
    snippet,
)

if TYPE_CHECKING:
    import tantivy


def _phrase_query(schema: tantivy.Schema, phrase: list[str]) -> tantivy.Query:
    import tantivy

    if len(phrase) == 1:
        word = phrase[0]
        if len(word) == 1 and CJK_CHAR.match(word):
            return tantivy.Query.term_query(schema, "cjk", word)
        return tantivy.Query.term_query(schema, "text", word)
    words: list[str | tuple[int, str]] = list(phrase)
    return tantivy.Query.phrase_query(schema, "text", words)


def _any_of(schema: tantivy.Schema, field_name: str, values: Iterable[Any]) -> tantivy.Query:
    import tantivy

    should = tantivy.Occur.Should
    clauses = [(should, tantivy.Query.term_query(schema, field_name, v)) for v in values]
    return tantivy.Query.boolean_query(clauses)


def build_query(schema: tantivy.Schema, parsed: ParsedQuery) -> tuple[tantivy.Query, bool]:
    """The tantivy query, and whether it has words to rank by (else newest first)."""
    import tantivy

    must, must_not = tantivy.Occur.Must, tantivy.Occur.MustNot
    clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
    for group in parsed.groups:
        if len(group) == 1:
            clauses.append((must, _phrase_query(schema, group[0])))
        else:
            alternatives = [(tantivy.Occur.Should, _phrase_query(schema, p)) for p in group]
            clauses.append((must, tantivy.Query.boolean_query(alternatives)))
    ranked = bool(clauses)
    filters: list[tantivy.Query] = []
    if parsed.senders:
        filters.append(_any_of(schema, "sender_key", parsed.senders))
    if parsed.rooms:
        filters.append(_any_of(schema, "room_id", parsed.rooms))
    if parsed.flag_room:
        filters.append(tantivy.Query.term_query(schema, "room_id", parsed.flag_room))
    if parsed.flag_sender:
        filters.append(tantivy.Query.term_query(schema, "sender_key", parsed.flag_sender))
    if parsed.trust:
        filters.append(_any_of(schema, "trust", parsed.trust))
    if parsed.has_thread:
        filters.append(tantivy.Query.term_query(schema, "thread", 1))
    if parsed.since_ms is not None or parsed.until_ms is not None:
        filters.append(
            tantivy.Query.range_query(
                schema,
                "timestamp_ms",
                tantivy.FieldType.Integer,
                parsed.since_ms,
                parsed.until_ms,
            )
        )
    for query in filters:
        clauses.append((must, tantivy.Query.const_score_query(query, 0.0)))
    if not clauses:
        clauses.append((must, tantivy.Query.all_query()))
    for phrase in parsed.excluded:
        clauses.append((must_not, _phrase_query(schema, phrase)))
    if len(clauses) == 1 and clauses[0][0] == must:
        return clauses[0][1], ranked  # alone, a term query prunes by block maxima (~2x faster)
    return tantivy.Query.boolean_query(clauses), ranked


@dataclass
class Hit:
    event_id: str
    room_id: str
    sender_id: str
    timestamp_ms: int
    body: str
    snippet: str
    highlights: list[tuple[int, int]]
    score: float
    trust: str

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "room_id": self.room_id,
            "sender_id": self.sender_id,
            "timestamp_ms": self.timestamp_ms,
            "body": self.body,
            "snippet": marked(self.snippet, self.highlights),
            "score": round(self.score, 4),
            "highlights": [list(span) for span in self.highlights],
            "trust": self.trust,
        }


class Searcher:
    """An open index; keep one for many queries (opening costs more than a query)."""

    def __init__(self, folder: Path) -> None:
        self.index = open_index(folder)
        self.index.reload()
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    def search(
        self,
        text: str,
        *,
        room: str | None = None,
        sender: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 20,
    ) -> list[Hit]:
        import tantivy

        parsed = parse_query(text)
        parsed.flag_room = room
        parsed.flag_sender = sender.casefold() if sender else None
        if since_ms is not None:
            parsed.since_ms = at_least(parsed.since_ms, since_ms)
        if until_ms is not None:
            parsed.until_ms = at_most(parsed.until_ms, until_ms)
        query, ranked = build_query(self.schema, parsed)
        if ranked:
            result = self.searcher.search(query, limit, count=False)
        else:
            result = self.searcher.search(
                query, limit, count=False, order_by_field="timestamp_ms", order=tantivy.Order.Desc
            )
        words = parsed.words
        hits = []
        for score, address in result.hits:
            doc = self.searcher.doc(address)
            body = bytes(doc["body"][0]).decode("utf-8")
            spans = highlight(body, words)
            text_, inside = snippet(body, spans)
            hits.append(
                Hit(
                    event_id=bytes(doc["event_id"][0]).decode("utf-8"),
                    room_id=str(doc["room_id"][0]),
                    sender_id=bytes(doc["sender_id"][0]).decode("utf-8"),
                    timestamp_ms=int(doc["timestamp_ms"][0]),
                    body=body,
                    snippet=text_,
                    highlights=inside,
                    score=float(score) if ranked else 0.0,
                    trust=str(doc["trust"][0]),
                )
            )
        return hits
