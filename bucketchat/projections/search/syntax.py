"""The search syntax and text handling: folding, terms, query parsing, snippets.

Pure functions, shared by the index (documents) and the searcher (queries), so both cut
text the same way: NFKD with combining marks dropped and casefold, words as tantivy's
default tokenizer cuts them, CJK runs as overlapping bigrams. No tantivy, no I/O here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from bucketchat.errors import UsageError
from bucketchat.timeutil import parse_time_arg

SNIPPET_CHARS = 160
_EXTRA_FOLDS = str.maketrans(
    {"ø": "o", "đ": "d", "ł": "l", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d", "\u0131": "i"}
)
_CJK = (
    r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff"
    r"\u3130-\u318f\uff66-\uff9f"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")
CJK_CHAR = re.compile(f"[{_CJK}]")
_SPACE = re.compile(r"\s")


def fold(text: str) -> str:
    """Case- and accent-folded text: what is indexed and what queries are cut from."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.casefold().translate(_EXTRA_FOLDS)


def fold_map(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each of its characters, the index of the original one."""
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        decomposed = unicodedata.normalize("NFKD", char)
        kept = "".join(c for c in decomposed if not unicodedata.combining(c))
        folded = kept.casefold().translate(_EXTRA_FOLDS)
        out.append(folded)
        origin.extend([index] * len(folded))
    return "".join(out), origin


def _cjk_bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def tokens(text: str) -> list[str]:
    """Index terms of already folded text: words, and bigrams inside CJK runs."""
    out: list[str] = []
    for word in _WORD.findall(text):
        position = 0
        for match in _CJK_RUN.finditer(word):
            out.extend(w for w in [word[position : match.start()]] if w)
            out.extend(_cjk_bigrams(match.group()))
            position = match.end()
        if word[position:]:
            out.append(word[position:])
    return out


def index_text(body: str) -> tuple[str, str]:
    folded = fold(body)
    if not CJK_CHAR.search(folded):  # tantivy's default tokenizer cuts words as tokens() does
        return folded, ""
    return " ".join(tokens(folded)), " ".join(CJK_CHAR.findall(folded))


# --- queries -----------------------------------------------------------------------------

FILTER_KEYS = ("from", "in", "before", "after", "is", "has")
TRUST_VALUES = ("attested", "tofu", "unverified")
_QUERY_TOKEN = re.compile(r'-?[A-Za-z]+:"[^"]*"?|-?"[^"]*"?|\S+')


@dataclass
class ParsedQuery:
    groups: list[list[list[str]]] = field(default_factory=list)  # AND of (OR of phrases)
    excluded: list[list[str]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # inclusive
    trust: list[str] = field(default_factory=list)
    has_thread: bool = False
    flag_room: str | None = None  # --room and --sender narrow further, on top of in:/from:
    flag_sender: str | None = None

    @property
    def words(self) -> list[str]:
        return [w for group in self.groups for phrase in group for w in phrase]


def parse_query(text: str) -> ParsedQuery:
    """Parse the search syntax: words, "phrases", OR, AND, -word, from:, in:, before:,
    after:, is:attested (tofu, unverified), has:thread."""
    parsed = ParsedQuery()
    join_next = False
    for raw in _QUERY_TOKEN.findall(text):
        if raw == "OR":
            join_next = bool(parsed.groups)
            continue
        if raw == "AND":
            continue
        negate = raw.startswith("-") and len(raw) > 1
        token = raw[1:] if negate else raw
        key, sep, value = token.partition(":")
        if sep and key.lower() in FILTER_KEYS and not token.startswith('"'):
            _apply_filter(parsed, key.lower(), value.strip('"'), negate)
            join_next = False
            continue
        phrase = tokens(fold(token.strip('"')))
        if not phrase:
            continue
        if negate:
            parsed.excluded.append(phrase)
        elif join_next:
            parsed.groups[-1].append(phrase)
        else:
            parsed.groups.append([phrase])
        join_next = False
    return parsed


def _apply_filter(parsed: ParsedQuery, key: str, value: str, negate: bool) -> None:
    if negate:
        raise UsageError(f"-{key}: is not supported; use {key}: to keep matches")
    if not value:
        raise UsageError(f"{key}: needs a value")
    if key == "from":
        parsed.senders.append(value.casefold())
    elif key == "in":
        parsed.rooms.append(value)
    elif key == "before":
        parsed.until_ms = at_most(parsed.until_ms, parse_time_arg(value) - 1)
    elif key == "after":
        parsed.since_ms = at_least(parsed.since_ms, parse_time_arg(value))
    elif key == "is":
        if value.lower() not in TRUST_VALUES:
            raise UsageError(f"is:{value} is not one of is:{', is:'.join(TRUST_VALUES)}")
        parsed.trust.append(value.lower())
    elif key == "has":
        if value.lower() != "thread":
            raise UsageError(f"has:{value} is not known; has:thread is")
        parsed.has_thread = True


def at_most(a: int | None, b: int) -> int:
    """``b``, or the smaller of the two bounds."""
    return b if a is None else min(a, b)


def at_least(a: int | None, b: int) -> int:
    """``b``, or the larger of the two bounds."""
    return b if a is None else max(a, b)


# --- snippets ----------------------------------------------------------------------------


def highlight(body: str, words: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of ``body`` whose folded text matches one of the query's terms."""
    folded, origin = fold_map(body)
    spans: list[tuple[int, int]] = []
    for word in set(words):
        if not word:
            continue
        cjk = bool(CJK_CHAR.match(word))
        start = 0
        while True:
            found = folded.find(word, start)
            if found < 0:
                break
            end = found + len(word)
            start = found + 1
            if not cjk:
                before = folded[found - 1] if found else " "
                after = folded[end] if end < len(folded) else " "
                if _WORD.match(before) or _WORD.match(after):
                    continue
            spans.append((origin[found], origin[end - 1] + 1))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for span in spans:
        if merged and span[0] <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], span[1]))
        else:
            merged.append(span)
    return merged


def snippet(body: str, spans: list[tuple[int, int]], width: int = SNIPPET_CHARS) -> tuple[
    str, list[tuple[int, int]]
]:
    """A window of ``body`` around its first highlight, and the highlights inside it."""
    text = _SPACE.sub(" ", body)  # one space for one character: spans stay valid
    if len(text) <= width:
        return text, spans
    first = spans[0][0] if spans else 0
    start = max(0, min(first - width // 4, len(text) - width))
    end = start + width
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    shift = len(prefix) - start
    inside = [
        (max(s, start) + shift, min(e, end) + shift) for s, e in spans if e > start and s < end
    ]
    return prefix + text[start:end] + suffix, inside


def marked(text: str, spans: list[tuple[int, int]], open_: str = "**", close: str = "**") -> str:
    out, position = [], 0
    for start, end in spans:
        out += [text[position:start], open_, text[start:end], close]
        position = end
    out.append(text[position:])
    return "".join(out)
