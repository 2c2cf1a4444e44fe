"""Device-supplied text made safe for ServiceNow (and log lines). Pure, no I/O.

A device name or episode id reaches an incident's short description,
description and work notes. ServiceNow renders ``[code]…[/code]`` in journal
fields as HTML, and people read these fields in browsers and mail clients, so
:func:`clean_text` removes:

* ``[code]`` / ``[/code]`` markup (any case and spacing, also when removing
  one would form another);
* HTML tags, and any ``<`` or ``>`` left over (so two fields cannot combine
  into a tag);
* control characters (C0, DEL, C1 such as U+0085), line and paragraph
  separators (U+2028/9), bidirectional and other invisible format characters
  (U+202A–202E, U+2066–2069, U+200B–200F, U+FEFF, …), surrogates and
  private-use characters: a line break becomes a space;

then collapses runs of whitespace and cuts to ``limit`` characters.
"""

from __future__ import annotations

import re
import unicodedata

_CODE_MARKUP = re.compile(r"\[\s*/?\s*code\s*\]", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")
_WHITESPACE = re.compile(r"\s+")
# Anything that needs the slow path: not printable ASCII, markup characters, or
# whitespace to collapse or strip. Device names almost never have any.
_NEEDS_WORK = re.compile(r"[^\x21-\x7e ]|[\[<>]|  |^ | $")
# Categories removed: Cc control, Cf format (bidi, zero-width), Cs surrogate,
# Co private use, Cn unassigned; Zl/Zp (U+2028/9) become spaces.
_DROP = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))
_BREAKS = frozenset(("Zl", "Zp"))
EMPTY = "(unnamed)"


def clean_text(value: str, limit: int = 200) -> str:
    """``value`` without markup, tags, control, format or bidi characters; see the module doc."""
    text = value
    if _NEEDS_WORK.search(text):
        text = "".join(_clean_char(c) for c in text)
        previous = None
        while previous != text:  # "[co[code]de]" is "[code]" once the inner one is gone
            previous = text
            text = _CODE_MARKUP.sub("", _TAG.sub("", text))
        text = text.replace("<", "").replace(">", "")
        text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def clean_name(value: str) -> str:
    """:func:`clean_text`, with a placeholder when nothing printable is left."""
    return clean_text(value) or EMPTY


def _clean_char(char: str) -> str:
    if char.isascii():
        # The common case, cheaply: printable ASCII stays, tab/newline become spaces.
        code = ord(char)
        if 32 <= code < 127:
            return char
        return " " if char in "\t\n\r\x0b\x0c" else ""
    category = unicodedata.category(char)
    if category in _BREAKS or char == "\x85":
        return " "
    if category in _DROP:
        return ""
    return char
