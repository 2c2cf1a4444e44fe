"""What stands in front of an instance on a site's network, for the stand-in's faults.

A proxy, a load balancer or a single sign-on gateway answers with HTML of any
status, or redirects to a login page; a developer instance that sleeps answers
200 with a page titled "Instance hibernating"; a broken middlebox trickles an
answer one byte at a time; a query whose limit is ignored answers megabytes.
These build those answers; :mod:`.handler` sends them.
"""

from __future__ import annotations

import html
import json
import time
from http import HTTPStatus
from typing import BinaryIO, Iterator, List, Tuple

LOGIN_PATH = "/login.do"
LOGIN_TITLE = "Log in | ServiceNow"
HTML_TYPE = "text/html;charset=UTF-8"


def html_page(title: str, text: str = "") -> bytes:
    """A small HTML page, as a proxy or a sleeping instance sends."""
    safe = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{}</title></head>'
        "<body><h1>{}</h1><p>{}</p></body></html>\n".format(safe, safe, html.escape(text))
    ).encode("utf-8")


def login_page() -> bytes:
    return html_page(LOGIN_TITLE, "User name / Password / Log in")


def redirect_page(location: str) -> bytes:
    return html_page("Moved", "The document has moved to {}.".format(location))


def huge_list(size: int) -> Tuple[int, Iterator[bytes]]:
    """A Table API list of about ``size`` bytes whose records match nothing the agent asks
    for: its exact length, and its bytes in parts of about 64 KB (never held whole)."""
    record = json.dumps(
        {
            "sys_id": "0" * 32,
            "number": "INC0000000",
            "state": "1",
            "correlation_id": "someone-else",
            "sys_mod_count": "0",
            "sys_updated_by": "admin",
            "description": "x" * 320,
        },
        separators=(",", ":"),
    ).encode("ascii")
    head, tail = b'{"result":[', b"]}"
    count = max(1, (size - len(head) - len(tail) + 1) // (len(record) + 1))
    total = len(head) + len(tail) + count * len(record) + (count - 1)

    def parts() -> Iterator[bytes]:
        yield head + record
        left = count - 1
        block = (b"," + record) * 128
        while left >= 128:
            yield block
            left -= 128
        if left:
            yield (b"," + record) * left
        yield tail

    return total, parts()


def raw_answer(status: int, headers: List[Tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 answer as bytes on the wire, for writing a byte at a time."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = ["HTTP/1.1 {} {}".format(status, phrase)]
    lines += ["{}: {}".format(name, value) for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def trickle(out: BinaryIO, data: bytes, interval: float) -> int:
    """Write ``data`` one byte every ``interval`` seconds; return how many bytes went out
    before the client went away."""
    sent = 0
    for index in range(len(data)):
        if index:
            time.sleep(interval)
        try:
            out.write(data[index : index + 1])
            out.flush()
        except OSError:
            break
        sent += 1
    return sent
