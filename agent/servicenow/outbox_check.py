"""Is an outbox file intact? SQLite's own check, plus what SQLite does not say about its WAL.

``PRAGMA quick_check`` finds damaged pages and "file is not a database". It
cannot see a damaged write-ahead log: SQLite replays WAL frames only up to the
first one whose checksum fails and silently ignores the rest, so the outbox
looks healthy and simply lacks the transactions committed after the damage.
:func:`lost_wal_commits` finds them: frames of the current WAL generation
(same salts as the header) that end a transaction (a commit frame) but lie
beyond what SQLite recovered.

A transaction torn by a power cut has no valid commit frame, so it is not
counted; should a disk have reordered its writes so that its commit frame
landed and an earlier frame did not, it would be (never acknowledged, yet
reported). The caller carries every readable row over and only reports, so
such a false alarm loses nothing.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from typing import Optional, Tuple

WAL_MAGIC = (0x377F0682, 0x377F0683)
WAL_HEADER = 32
FRAME_HEADER = 24


def open_for_check(path: str) -> sqlite3.Connection:
    """A connection for :func:`problem`; raises ``sqlite3.DatabaseError`` on a non-database."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def problem(db: sqlite3.Connection, path: str) -> Optional[str]:
    """What is wrong with the outbox ``db`` opened from ``path``; ``None`` if nothing.

    Run it before anything writes: the first write after a full checkpoint
    restarts the WAL and overwrites the evidence.
    """
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() == "wal":
        # A PASSIVE checkpoint reports how many frames SQLite recovered and
        # leaves the WAL file as it is.
        _busy, recovered, _done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        lost = lost_wal_commits(path + "-wal", max(0, recovered))
        if lost:
            return (
                "{} committed transactions in its write-ahead log follow a damaged frame and "
                "cannot be read".format(lost)
            )
    rows = db.execute("PRAGMA quick_check").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        return "SQLite's integrity check fails: {}".format("; ".join(str(r[0]) for r in rows[:3]))
    return None


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


def read_only_problem(path: str) -> Optional[str]:
    """``quick_check`` through a read-only connection, for a live or stopped agent's outbox.

    Never writes, checkpoints or deletes the WAL, so it is safe beside a
    running agent and leaves a damaged file as it found it.
    """
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    if [tuple(r) for r in rows] != [("ok",)]:
        return "SQLite's integrity check fails: {}".format("; ".join(str(r[0]) for r in rows[:3]))
    return None
