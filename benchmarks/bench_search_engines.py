"""Which full-text engine: tantivy vs SQLite FTS5 vs DuckDB's FTS extension, same texts.

    python benchmarks/bench_search_engines.py --db /tmp/bench.duckdb --out /tmp/engines

(results also go to ``<out>/engines.json``, which ``bench_query.py --engines`` puts in
RESULTS.md)

Reads the current message text of a synced cache (the ``timeline`` view), builds each
engine's index over it, and times the same queries (p50 over 100 runs, top 20 by BM25):
a rare word, a common word, a very common word, a phrase. Then it times what a sync
needs: adding 1,000 messages to the built index.

DuckDB's FTS extension cannot be installed here (no extension repository offline); PyPI's
``duckdb-extension-fts`` ships it for duckdb 1.5.5 only, so run this script with a Python
that has ``duckdb==1.5.5 duckdb-extension-fts tantivy pyarrow`` — it skips what it cannot
load and says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUERIES = {"rare": "zyzzyva", "common": "deploy", "very common": "the", "phrase": "deploy today"}


def p50(fn: Callable[[], Any], repeat: int = 100) -> tuple[float, Any]:
    result = fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def load_texts(db: Path) -> list[tuple[int, str]]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT row_number() OVER () AS id, body FROM timeline "
            "WHERE type = 'm.room.message' AND body IS NOT NULL AND trust <> 'invalid'"
        ).fetchall()
    finally:
        con.close()
    return [(int(i), str(b)) for i, b in rows]


def bench_sqlite(texts: list[tuple[int, str]], out: Path) -> dict[str, Any]:
    path = out / "fts5.sqlite"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE VIRTUAL TABLE m USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')"
    )
    started = time.perf_counter()
    con.executemany("INSERT INTO m (rowid, body) VALUES (?, ?)", texts)
    con.commit()
    build = time.perf_counter() - started
    size = path.stat().st_size
    result: dict[str, Any] = {"build_s": round(build, 1), "size_mb": round(size / 1e6)}
    for label, text in QUERIES.items():
        match = f'"{text}"' if " " in text else text
        ms, _ = p50(lambda match=match: con.execute(
            "SELECT rowid, bm25(m) FROM m WHERE m MATCH ? ORDER BY bm25(m) LIMIT 20", [match]
        ).fetchall())
        result[label] = round(ms, 2)
    extra = [(len(texts) + i + 1, "a fresh deploy message") for i in range(1000)]
    started = time.perf_counter()
    con.executemany("INSERT INTO m (rowid, body) VALUES (?, ?)", extra)
    con.commit()
    result["add_1000_s"] = round(time.perf_counter() - started, 3)
    con.close()
    return result


def bench_duckdb_fts(texts: list[tuple[int, str]], out: Path) -> dict[str, Any]:
    import duckdb

    try:
        import duckdb_extension_fts  # type: ignore[import-not-found]

        extension_dir = Path(duckdb_extension_fts.__file__).parent / "extensions"
    except ImportError:
        return {"skipped": "duckdb-extension-fts is not installed"}
    files = sorted(extension_dir.rglob("fts.duckdb_extension"))
    if not files:
        return {"skipped": f"no fts.duckdb_extension under {extension_dir}"}
    path = out / "fts.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute(f"LOAD '{files[-1]}'")
    except duckdb.Error as exc:
        return {"skipped": f"cannot load fts into duckdb {duckdb.__version__}: {exc}"}
    import pyarrow as pa

    con.register("t", pa.table({"id": [i for i, _ in texts], "body": [b for _, b in texts]}))
    con.execute("CREATE TABLE m AS SELECT * FROM t")
    started = time.perf_counter()
    con.execute("PRAGMA create_fts_index('m', 'id', 'body', strip_accents = 1, stemmer = 'none')")
    build = time.perf_counter() - started
    con.execute("CHECKPOINT")
    result: dict[str, Any] = {"build_s": round(build, 1),
                              "size_mb": round(path.stat().st_size / 1e6)}
    sql = (
        "SELECT id, score FROM (SELECT id, fts_main_m.match_bm25(id, ?, conjunctive := 1) "
        "AS score FROM m) WHERE score IS NOT NULL ORDER BY score DESC LIMIT 20"
    )
    for label, text in QUERIES.items():
        ms, _ = p50(lambda text=text: con.execute(sql, [text]).fetchall(), repeat=20)
        result[label] = round(ms, 2)
    started = time.perf_counter()
    con.execute("INSERT INTO m SELECT 10000000 + range, 'a fresh deploy message' FROM range(1000)")
    con.execute("PRAGMA create_fts_index('m', 'id', 'body', overwrite = 1)")
    result["add_1000_s"] = round(time.perf_counter() - started, 1)
    result["note"] = "adding rows needs the whole index rebuilt (overwrite = 1)"
    con.close()
    return result


def bench_tantivy(texts: list[tuple[int, str]], out: Path) -> dict[str, Any]:
    import tantivy

    folder = out / "tantivy"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True)
    builder.add_text_field("body", stored=True)
    schema = builder.build()
    index = tantivy.Index(schema, path=str(folder))
    writer = index.writer(128_000_000, 1)
    started = time.perf_counter()
    for i, body in texts:
        document = tantivy.Document()
        document.add_integer("id", i)
        document.add_text("body", body)
        writer.add_document(document)
    writer.commit()
    writer.wait_merging_threads()
    build = time.perf_counter() - started
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    result: dict[str, Any] = {"build_s": round(build, 1), "size_mb": round(size / 1e6)}
    index.reload()
    searcher = index.searcher()
    for label, text in QUERIES.items():
        words = text.split()
        query = (
            tantivy.Query.term_query(schema, "body", words[0]) if len(words) == 1
            else tantivy.Query.phrase_query(schema, "body", list(words))
        )
        ms, _ = p50(lambda query=query: [
            searcher.doc(address) for _, address in searcher.search(query, 20, count=False).hits
        ])
        result[label] = round(ms, 2)
    writer = index.writer(64_000_000, 1)
    started = time.perf_counter()
    for n in range(1000):
        document = tantivy.Document()
        document.add_integer("id", 10_000_000 + n)
        document.add_text("body", "a fresh deploy message")
        writer.add_document(document)
    writer.commit()
    result["add_1000_s"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a synced bucketchat cache")
    parser.add_argument("--out", type=Path, required=True, help="a scratch folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    texts = load_texts(args.db)
    results = {"messages": len(texts)}
    for name, fn in [("tantivy", bench_tantivy), ("sqlite_fts5", bench_sqlite),
                     ("duckdb_fts", bench_duckdb_fts)]:
        try:
            results[name] = fn(texts, args.out)
        except Exception as exc:  # a benchmark reports what it could not measure
            results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps(results, indent=2))
    (args.out / "engines.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
