"""Text from the data made safe to show: no control characters, no terminal escapes.

Message text is the data of other people. Before it reaches a terminal or an export it
loses every C0/C1 control character (ESC starts terminal sequences; CR and BS overwrite
what was shown), DEL, and the bidirectional overrides and isolates that can make text
read differently from what it is. Newlines and tabs stay where a caller asks for them.
"""

from __future__ import annotations

import re

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
