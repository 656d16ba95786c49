"""The HTML export: one self-contained offline file, readable in light and dark.

Every piece of data is HTML-escaped text; the page carries no script at all and a
Content-Security-Policy of ``default-src 'none'`` with inline styles only, so even a
browser that found markup in the data would fetch nothing and run nothing. Links in
messages stay text: nothing in the file points at the network.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.export.common import (
    ITEM_COUNT,
    ROOM_NAME,
    ExportOptions,
    ExportResult,
    Progress,
    Ticker,
    clean_text,
    count_rows,
    describe_member,
    iso_time,
    items,
    prepare_file,
    thread_order,
)
from bucketchat.present import sender_hue

if TYPE_CHECKING:
    from bucketchat.cache import Cache

STYLE = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1d1f23; --muted: #676d78;
  --line: #e3e6ea; --card: #f6f7f9; --attested: #1a7f37; --tofu: #3a6ea5;
  --unverified: #9a6700; --invalid: #cf222e; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181c; --fg: #e6e8eb; --muted: #9aa1ad; --line: #2c3036;
    --card: #1e2126; --attested: #4ac26b; --tofu: #6ea8e0; --unverified: #d4a72c;
    --invalid: #ff7b72; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 52rem; padding: 1.5rem 1rem 4rem; background: var(--bg);
  color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.5rem; margin: 2rem 0 0.25rem; }
.meta { color: var(--muted); font-size: 0.85rem; margin-bottom: 1rem; }
h2 { font-size: 0.85rem; color: var(--muted); text-align: center; margin: 1.5rem 0 0.5rem;
  border-bottom: 1px solid var(--line); line-height: 0.1em; }
h2 span { background: var(--bg); padding: 0 0.6rem; }
.item { padding: 0.35rem 0.6rem; border-radius: 6px; margin: 0.15rem 0; }
.item:hover { background: var(--card); }
.reply { margin-left: 1.4rem; border-left: 2px solid var(--line); padding-left: 0.7rem; }
.sender { font-weight: 600; }
time, .note { color: var(--muted); font-size: 0.8rem; }
.body { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.1rem 0 0; }
.deleted { color: var(--muted); font-style: italic; }
.member { color: var(--muted); font-size: 0.9rem; }
.badge { font-size: 0.7rem; border: 1px solid currentColor; border-radius: 999px;
  padding: 0 0.45rem; margin-left: 0.3rem; }
.attested { color: var(--attested); } .tofu { color: var(--tofu); }
.unverified { color: var(--unverified); } .invalid { color: var(--invalid); }
.reactions span { display: inline-block; background: var(--card); border: 1px solid var(--line);
  border-radius: 999px; padding: 0 0.5rem; margin: 0.2rem 0.25rem 0 0; font-size: 0.85rem; }
.thread { color: var(--muted); font-size: 0.8rem; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'"


def _e(text: str) -> str:
    return html.escape(clean_text(text), quote=True)


def _item_html(item: dict[str, Any]) -> str:
    depth = item["depth"] or 0
    classes = "item reply" if depth else "item"
    style = f' style="margin-left:{1.4 * depth:.1f}rem"' if depth > 1 else ""
    trust = item["trust"] if item["trust"] in ("attested", "tofu", "unverified") else "invalid"
    badge = f'<span class="badge {trust}" title="key trust">{trust}</span>'
    when = iso_time(item["timestamp_ms"])
    sender = (
        f'<span class="sender" style="color: hsl({sender_hue(item["sender_id"])} 55% 50%)">'
        f"{_e(item['sender_id'])}</span>"
    )
    head = f'{sender} <time datetime="{_e(when)}">{_e(when[11:16])}</time>{badge}'
    if item["type"] == "m.room.member":
        return (
            f'<div class="{classes} member"{style}>{sender} {_e(describe_member(item))} '
            f'<time datetime="{_e(when)}">{_e(when[11:16])}</time>{badge}</div>'
        )
    parts = [f'<div class="{classes}"{style}>', f"<div>{head}"]
    if item["edited"]:
        parts.append(' <span class="note">(edited)</span>')
    if item["redacted"] and item["body"] is not None:  # kept by --include-redacted
        parts.append(' <span class="note">(deleted)</span>')
    parts.append("</div>")
    if item["body"] is None:
        parts.append('<p class="body deleted">message deleted</p>')
    else:
        parts.append(f'<p class="body">{_e(item["body"])}</p>')
    if item["reactions"]:
        spans = "".join(
            f"<span>{_e(key)} {int(count)}</span>"
            for key, count in sorted(item["reactions"].items())
        )
        parts.append(f'<div class="reactions">{spans}</div>')
    if item["reply_count"]:
        word = "reply" if item["reply_count"] == 1 else "replies"
        parts.append(f'<div class="thread">↳ {int(item["reply_count"])} {word}</div>')
    parts.append("</div>")
    return "".join(parts)


def export_html(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    prepare_file(output)
    ticker = Ticker(progress, count_rows(cache, ITEM_COUNT, options))
    title = options.rooms[0] if len(options.rooms) == 1 else f"{len(options.rooms)} rooms"
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)} · bucketchat export</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    count = 0
    for room in options.rooms:
        name_row = cache.one(ROOM_NAME, [room])
        page.append(f'<section class="room"><h1>{_e(room)}</h1>')
        if name_row and name_row[0]:
            page.append(f'<div class="meta">{_e(name_row[0])}</div>')
        day = None
        for item in thread_order(items(cache, room, options)):
            this_day = iso_time(item["timestamp_ms"])[:10]
            if not item["depth"] and this_day != day:
                day = this_day
                page.append(f"<h2><span>{_e(day)}</span></h2>")
            page.append(_item_html(item))
            count += 1
            ticker.tick()
        page.append("</section>")
    page.append(
        '<p class="meta">Exported by bucketchat. Times are UTC. Badges: the trust of the '
        "sender's key (attested, tofu = trusted on first use, unverified).</p>"
    )
    page.append("</body></html>\n")
    output.write_text("\n".join(page), encoding="utf-8")
    ticker.finish()
    return ExportResult("html", output, options.rooms, count, 1)
