"""The search index: current message text in a tantivy index beside the cache, kept fresh.

    timeline_rows (version) ──update_index──▶ <cache>.search/ (tantivy, BM25) ──search──▶ hits

Why tantivy: measured on the same ~820k messages (benchmarks/bench_search_engines.py) it
answers a rare word in 0.02 ms and a common one in 0.3 ms and takes 1,000 new messages in
~30 ms (delete by ``seq``, add, commit); DuckDB's FTS extension took 20-110 ms and rebuilds
its whole index after any change (1.6 s), SQLite FTS5 took 63-590 ms on common words.

Freshness: the index stores, in ``watermark.json`` written after each commit, the cache's
refresh epoch and the ``timeline_rows.version`` it has caught up to. Rows whose version is
newer (new messages, edits, redactions, trust changes) are re-indexed; a changed epoch (a
rebuilt cache) re-indexes everything. Re-indexing a row is idempotent, so a crash between
the cache and the index, or between the commit and the watermark, heals on the next open.

Text is folded and cut by ``search.syntax`` before tantivy sees it, the same way for
documents and queries, whatever the script; for an ASCII message that folding is lower(),
so DuckDB does it while writing the documents as JSON and Python only sees the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.projections.search.syntax import index_text

if TYPE_CHECKING:
    import tantivy

    from bucketchat.cache import Cache

INDEX_FORMAT = 2
WATERMARK = "watermark.json"
WRITER_HEAP = 128_000_000
BATCH_ROWS = 50_000

# A message as the JSON document tantivy parses itself: one Python call per message instead
# of a dozen, and no per-row Python for the ~99% of rows whose body and sender are ASCII,
# where folding is lower() and sender keys are string cuts that DuckDB does the same way.
# Other rows (``odd`` is [body, sender]) get text, cjk and sender_key from search_syntax.
# Stored-only strings are bytes fields (base64 in JSON): tantivy-py indexes every text field,
# and indexing unique event ids and bodies as terms cost seconds for no query. Documents
# come in the order the rows are stored: sorting them by seq held every document of a
# full build in memory, which left the findings count beside it (pull) out of memory.
MESSAGE_DOCUMENTS = """
SELECT to_json({
         seq: seq,
         event_id: base64(encode(event_id)),
         room_id: room_id,
         sender_id: base64(encode(sender_id)),
         sender_key: CASE WHEN local IN ('', lowered) THEN [lowered] ELSE [lowered, local] END,
         timestamp_ms: timestamp_ms,
         trust: trust,
         thread: CASE WHEN thread_root IS NULL THEN 0 ELSE 1 END,
         text: lower(body),
         cjk: '',
         body: base64(encode(body))
       }),
       CASE WHEN strlen(body) = length(body) AND strlen(sender_id) = length(sender_id)
            THEN NULL ELSE [body, sender_id] END AS odd
FROM (
    SELECT seq, event_id, room_id, sender_id, timestamp_ms, trust, thread_root, body,
           lower(sender_id) AS lowered,
           split_part(split_part(ltrim(lower(sender_id), '@'), '@', 1), ':', 1) AS local
    FROM timeline_rows
    WHERE version > ? AND type = 'm.room.message' AND NOT redacted AND body IS NOT NULL
      AND trust <> 'invalid'
)
"""
CHANGED_SEQS = "SELECT seq FROM timeline_rows WHERE version > ? ORDER BY seq"
CHANGED_COUNT = "SELECT count(*) FROM timeline_rows WHERE version > ?"
INDEX_STATE = "SELECT key, value FROM cache_meta WHERE key IN ('query.epoch', 'query.version')"

def index_dir(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + ".search")


def _schema() -> tantivy.Schema:
    import tantivy

    # Filters are constant-score, so their fields keep document ids only ("basic"); the time
    # range and newest-first order read the fast column, so timestamp_ms is not indexed.
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("seq", indexed=True)  # re-indexing deletes by seq
    builder.add_bytes_field("event_id", stored=True)
    builder.add_text_field("room_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_bytes_field("sender_id", stored=True)
    builder.add_text_field("sender_key", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("timestamp_ms", stored=True, fast=True)
    builder.add_text_field("trust", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field("thread", indexed=True)
    builder.add_text_field("text", tokenizer_name="default")
    builder.add_text_field("cjk", tokenizer_name="default")
    builder.add_bytes_field("body", stored=True)
    return builder.build()


def _sender_keys(sender_id: str) -> list[str]:
    lowered = sender_id.casefold()
    keys = [lowered]
    local = lowered.lstrip("@").split("@", 1)[0].split(":", 1)[0]
    if local and local != lowered:
        keys.append(local)
    return keys


@dataclass
class IndexState:
    epoch: str | None = None
    version: int = 0
    fmt: int = INDEX_FORMAT


def _read_state(folder: Path) -> IndexState:
    try:
        data = json.loads((folder / WATERMARK).read_text("utf-8"))
        return IndexState(str(data["epoch"]), int(data["version"]), int(data["format"]))
    except (OSError, ValueError, KeyError, TypeError):
        return IndexState()


def _write_state(folder: Path, state: IndexState) -> None:
    temporary = folder / (WATERMARK + ".tmp")
    temporary.write_text(
        json.dumps({"epoch": state.epoch, "version": state.version, "format": state.fmt}),
        encoding="utf-8",
    )
    os.replace(temporary, folder / WATERMARK)


def open_index(folder: Path) -> tantivy.Index:
    import tantivy

    folder.mkdir(parents=True, exist_ok=True)
    schema = _schema()
    try:
        return tantivy.Index(schema, path=str(folder), reuse=True)
    except (OSError, ValueError):
        # an index of another format, or a damaged one: it is only a cache of the cache
        for child in folder.iterdir():
            if child.is_file():
                child.unlink()
        return tantivy.Index(schema, path=str(folder), reuse=False)


def _cache_state(cache: Cache) -> tuple[str | None, int]:
    values = dict(cache.rows(INDEX_STATE))
    return values.get("query.epoch"), int(values.get("query.version") or 0)


def index_lags(cache: Cache) -> bool:
    epoch, version = _cache_state(cache)
    state = _read_state(index_dir(cache.path))
    return state.fmt != INDEX_FORMAT or state.epoch != epoch or state.version < version


def _writer(index: tantivy.Index, wait_seconds: float) -> tantivy.IndexWriter | None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return index.writer(WRITER_HEAP, 1)
        except ValueError:
            if time.monotonic() >= deadline:
                return None  # another process is indexing; the next open catches up
            time.sleep(0.05)


IndexProgress = Callable[[int], None]


def _odd_document(document: str, body: str, sender: str) -> str:
    fields = json.loads(document)
    fields["text"], fields["cjk"] = index_text(body)
    fields["sender_key"] = _sender_keys(sender)
    return json.dumps(fields)


def _add_messages(
    cache: Cache, writer: tantivy.IndexWriter, since: int, progress: IndexProgress | None
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    add = writer.add_json
    # DuckDB makes the next batch of documents on a thread of its own while this one hands
    # the last to tantivy: one thread doing both was the limit of a full build.
    cursor = cache.beside()
    try:
        batches = cursor.batches(MESSAGE_DOCUMENTS, [since], BATCH_ROWS)
        none: list[tuple[Any, ...]] = []
        done = 0
        with ThreadPoolExecutor(1, thread_name_prefix="bucketchat-documents") as fetcher:
            following = fetcher.submit(next, batches, none)
            while rows := following.result():
                following = fetcher.submit(next, batches, none)
                for document, odd in rows:
                    add(document if odd is None else _odd_document(document, *odd))
                done += len(rows)
                if progress:
                    progress(done)
    finally:
        cursor.close()


def update_index(
    cache: Cache, *, wait_seconds: float = 5.0, progress: IndexProgress | None = None
) -> int:
    """Bring the index beside ``cache`` up to date with ``timeline_rows``; rows re-indexed."""
    folder = index_dir(cache.path)
    epoch, version = _cache_state(cache)
    state = _read_state(folder)
    rebuild = state.fmt != INDEX_FORMAT or state.epoch != epoch
    if not rebuild and state.version >= version:
        return 0
    index = open_index(folder)
    writer = _writer(index, wait_seconds)
    if writer is None:
        return 0
    since = 0 if rebuild else state.version
    try:
        if rebuild:
            writer.delete_all_documents()
            row = cache.one(CHANGED_COUNT, [since])
            changed = int(row[0]) if row else 0
        else:
            # every changed row goes, even one no longer indexed (redacted, now invalid);
            # documents added after these deletes are not touched by them
            seqs = [seq for (seq,) in cache.rows(CHANGED_SEQS, [since])]
            for seq in seqs:
                writer.delete_documents_by_term("seq", seq)
            changed = len(seqs)
        _add_messages(cache, writer, since, progress)
        writer.commit()
        writer.wait_merging_threads()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.rollback()
        raise
    _write_state(folder, IndexState(epoch, version))
    return changed
