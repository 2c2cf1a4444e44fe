"""Counted nouns for the lines ``edge-agent run`` and ``simulate`` print: '1 breach', '2 breaches'."""

from __future__ import annotations

from typing import Optional


def counted(n: int, singular: str, plural: Optional[str] = None) -> str:
    """``n`` and the noun in the number it takes (``plural`` where adding -s/-es is wrong)."""
    if n == 1:
        return f"{n} {singular}"
    if plural is None:
        head, _, tail = singular.partition(" ")  # "anomaly event" -> "anomaly events"
        word = tail or head
        word += "es" if word.endswith(("ch", "sh", "s", "x")) else "s"
        plural = f"{head} {word}" if tail else word
    return f"{n} {plural}"
