"""Values the agent puts into a ServiceNow encoded query (``sysparm_query``), made inert.

An encoded query joins terms with ``^`` (``^OR``, ``^NQ``, ``ORDERBY...``) and
has no documented escape for a literal ``^`` in a value, and ``=``, ``!``,
``<``, ``>``, ``@`` or spaces can form operators. ServiceNow silently ignores
a term it cannot parse, so an unsafe value does not fail: it widens or breaks
the lookup, and every retry of a create opens another incident.

So every value the agent queries by uses only ``[A-Za-z0-9._:-]``. Any other
text is mapped, deterministically: each character outside that set becomes
``_``, and ``-`` plus the first 8 hex digits of the SHA-1 of the original
(UTF-8) is appended, so two ids that differ only in unsafe characters
(``lab^pi`` and ``lab=pi``) stay distinct. Safe text is returned unchanged,
so correlation ids of existing incidents do not move. Pure, no I/O.
"""

from __future__ import annotations

import re

SAFE_CHARACTERS = "A-Za-z0-9._:-"
_UNSAFE = re.compile("[^" + SAFE_CHARACTERS + "]")
_SAFE = re.compile("[" + SAFE_CHARACTERS + "]*")
HASH_CHARS = 8


def is_query_safe(text: str) -> bool:
    """Whether ``text`` can stand as a value in an encoded query as it is."""
    return _SAFE.fullmatch(text) is not None


def query_safe(text: str, max_length: int) -> str:
    """``text`` itself if it is safe and fits ``max_length``, else its safe form of exactly
    ``max_length`` characters (or shorter, when the text is); ``max_length`` > ``HASH_CHARS``."""
    if is_query_safe(text) and len(text) <= max_length:
        return text
    import hashlib  # only for unusual ids: it loads OpenSSL

    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    mapped = _UNSAFE.sub("_", text)
    return mapped[: max_length - HASH_CHARS - 1] + "-" + digest
