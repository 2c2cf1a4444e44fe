"""``edge-agent outbox --check``: committed transactions SQLite would silently skip.

SQLite replays the frames of a write-ahead log only up to the first one whose
checksum fails and ignores the rest, so an outbox whose WAL was damaged (a bad
sector, a torn write) opens as healthy and simply lacks the transactions
committed after the damage. The agent's start catches that through the outbox
marker, as far as the marker had counted them (``agent.servicenow.outbox_guard``);
this reads the log itself, so it needs SQLite's file format
(https://www.sqlite.org/fileformat2.html#walformat) and runs only on request,
on a stopped agent's files (the agent's first write after a checkpoint restarts
the log and overwrites the evidence) or on a copy the agent kept.

:func:`lost_commits` counts the frames of the current WAL generation (same salts
as the header) that end a transaction (a commit frame) but lie beyond what
SQLite recovers. A transaction torn by a power cut has no valid commit frame,
so it is not counted; should a disk have reordered its writes so that its
commit frame landed and an earlier frame did not, it would be (never
acknowledged, yet reported): a false alarm that loses nothing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
from typing import Optional, Tuple

WAL_MAGIC = (0x377F0682, 0x377F0683)
WAL_HEADER = 32
FRAME_HEADER = 24


def lost_wal_commits(wal_path: str, recovered_frames: int) -> int:
    """Commit frames of the current WAL generation beyond ``recovered_frames``.

    A damaged header (a WAL SQLite ignores whole) with frames behind it counts
    every commit frame in the file.
    """
    if not os.path.exists(wal_path):
        return 0
    with open(wal_path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(WAL_HEADER)
        if len(header) < WAL_HEADER:
            return 0
        magic, _version, page_size, _ckpt, salt1, salt2, sum1, sum2 = struct.unpack(">8I", header)
        frame_size = FRAME_HEADER + page_size
        header_ok = (
            magic in WAL_MAGIC
            and _valid_page_size(page_size)
            and wal_checksum(header[:24], big_endian=bool(magic & 1)) == (sum1, sum2)
        )
        if not header_ok:
            page_size = _guess_page_size(size)
            if page_size is None:
                return 0
            frame_size = FRAME_HEADER + page_size
            recovered_frames, salts = 0, None
        else:
            salts = (salt1, salt2)
        lost = 0
        for index in range(recovered_frames, (size - WAL_HEADER) // frame_size):
            handle.seek(WAL_HEADER + index * frame_size)
            _page, commit, frame_salt1, frame_salt2 = struct.unpack(">4I", handle.read(16))
            if commit and (salts is None or (frame_salt1, frame_salt2) == salts):
                lost += 1
        return lost


def wal_checksum(data: bytes, big_endian: bool, start: Tuple[int, int] = (0, 0)) -> Tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes)."""
    words = struct.unpack(("<" if not big_endian else ">") + "%dI" % (len(data) // 4), data)
    s1, s2 = start
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


def _valid_page_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _guess_page_size(file_size: int) -> Optional[int]:
    # The outbox never changes SQLite's default page size (4096).
    if file_size >= WAL_HEADER + FRAME_HEADER + 4096:
        return 4096
    return None


def lost_commits(db_path: str) -> int:
    """Committed transactions in ``db_path``'s write-ahead log that SQLite would skip.

    Reads only: SQLite recovers a copy of the database and its log, in a
    temporary folder, to say how many frames it takes; the log itself is read
    beyond them.
    """
    wal_path = db_path + "-wal"
    if not os.path.exists(wal_path) or os.path.getsize(wal_path) <= WAL_HEADER:
        return 0
    return lost_wal_commits(wal_path, recovered_frames(db_path))


def recovered_frames(db_path: str) -> int:
    """How many frames of ``db_path``'s log SQLite recovers, found on a copy of both files."""
    folder = tempfile.mkdtemp(prefix="edge-agent-wal-check-")
    try:
        copy = os.path.join(folder, "outbox.sqlite3")
        shutil.copyfile(db_path, copy)
        shutil.copyfile(db_path + "-wal", copy + "-wal")
        db = sqlite3.connect(copy, isolation_level=None)
        try:
            # A PASSIVE checkpoint reports how many frames SQLite took from the log.
            _busy, frames, _done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            db.close()
        return max(0, int(frames))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def describe(lost: int) -> str:
    return (
        "{} committed transactions in its write-ahead log follow a damaged frame and "
        "cannot be read".format(lost)
    )
