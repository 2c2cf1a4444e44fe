"""The MQTT bridge's spools on their own: no broker, real SQLite files, real faults."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from agent.errors import ConfigError
from agent.standalone.mqtt_bridge.spool import MemorySpool, SpoolError, SqliteSpool, entry_size

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "IoTBlog/sensorData"


def message(seq: int, size: int = 20) -> bytes:
    return ("%05d" % seq).encode().ljust(size, b"x")


MESSAGE_SIZE = entry_size(TOPIC, message(0))


@pytest.fixture(params=["memory", "sqlite"])
def make_spool(request, tmp_path):
    made = []

    def make(limit_bytes: int) -> MemorySpool:
        if request.param == "memory":
            spool = MemorySpool(limit_bytes)
        else:
            spool = SqliteSpool(str(tmp_path / "spool" / "mqtt.sqlite3"), limit_bytes)
        made.append(spool)
        return spool

    yield make
    for spool in made:
        spool.close()


def seqs(spool: MemorySpool) -> list:
    return [int(e.payload[:5]) for e in spool.entries_after(0, 1000)]


def test_messages_come_out_oldest_first_and_leave_only_when_removed(make_spool):
    spool = make_spool(10 * MESSAGE_SIZE)
    ids = [spool.append(TOPIC, message(seq))[0] for seq in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert seqs(spool) == [0, 1, 2, 3]
    assert (len(spool), spool.bytes) == (4, 4 * MESSAGE_SIZE)

    assert spool.remove(ids[1]) is True
    assert spool.remove(ids[1]) is False  # an ack seen twice removes nothing more
    assert seqs(spool) == [0, 2, 3]
    assert [e.id for e in spool.entries_after(ids[0], 1)] == [ids[2]]  # the cursor skips gaps
    assert (len(spool), spool.bytes) == (3, 3 * MESSAGE_SIZE)


def test_a_full_spool_drops_the_oldest_and_says_how_many(make_spool):
    spool = make_spool(3 * MESSAGE_SIZE)
    dropped = [spool.append(TOPIC, message(seq))[1] for seq in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert seqs(spool) == [2, 3, 4]
    assert spool.bytes == 3 * MESSAGE_SIZE

    big = message(9, 2 * MESSAGE_SIZE - len(TOPIC))  # needs the room of two: the two oldest go
    assert entry_size(TOPIC, big) == 2 * MESSAGE_SIZE
    entry_id, dropped_now = spool.append(TOPIC, big)
    assert entry_id is not None and dropped_now == 2
    assert seqs(spool) == [4, 9]


def test_a_message_bigger_than_the_whole_spool_is_refused_and_nothing_is_dropped(make_spool):
    spool = make_spool(3 * MESSAGE_SIZE)
    spool.append(TOPIC, message(1))
    assert spool.append(TOPIC, message(2, 4 * MESSAGE_SIZE)) == (None, 0)
    assert seqs(spool) == [1]


def test_a_spool_limit_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="positive"):
        MemorySpool(0)
    with pytest.raises(ConfigError, match="positive"):
        SqliteSpool(str(tmp_path / "s.sqlite3"), -1)


def test_an_unusable_spool_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spool folder should be")
    with pytest.raises(ConfigError, match=r"cannot open the spool file .*not-a-folder"):
        SqliteSpool(str(blocker / "mqtt.sqlite3"), 1000)


def test_a_sqlite_spool_keeps_its_messages_across_a_reopen(tmp_path):
    path = str(tmp_path / "mqtt.sqlite3")
    first = SqliteSpool(path, 10 * MESSAGE_SIZE)
    ids = [first.append(TOPIC, message(seq))[0] for seq in range(3)]
    first.remove(ids[0])
    first.close()

    again = SqliteSpool(path, 10 * MESSAGE_SIZE)
    try:
        assert seqs(again) == [1, 2]
        assert (len(again), again.bytes) == (2, 2 * MESSAGE_SIZE)
        new_id, _ = again.append(TOPIC, message(3))
        assert new_id > ids[-1]  # ids never go back, so a resend cursor stays valid
    finally:
        again.close()


def test_a_sqlite_spool_reopened_with_a_lower_limit_drops_its_oldest(tmp_path):
    path = str(tmp_path / "mqtt.sqlite3")
    first = SqliteSpool(path, 10 * MESSAGE_SIZE)
    for seq in range(5):
        first.append(TOPIC, message(seq))
    first.close()

    smaller = SqliteSpool(path, 2 * MESSAGE_SIZE)
    try:
        assert smaller.dropped_at_open == 3
        assert seqs(smaller) == [3, 4]
    finally:
        smaller.close()


_WRITER = """
import sys
from agent.standalone.mqtt_bridge.spool import SqliteSpool
spool = SqliteSpool(sys.argv[1], 10_000_000)
for seq in range(100_000):
    spool.append("IoTBlog/sensorData", b"%05d" % seq)
    print(seq, flush=True)
"""


def test_a_sqlite_spool_loses_nothing_it_stored_when_the_agent_is_killed(tmp_path):
    path = str(tmp_path / "mqtt.sqlite3")
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        stored = -1
        for line in writer.stdout:  # every line printed is an append that returned
            stored = int(line)
            if stored >= 200:
                break
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    spool = SqliteSpool(path, 10_000_000)
    try:
        found = [int(e.payload) for e in spool.entries_after(0, 1_000_000)]
    finally:
        spool.close()
    assert found[: stored + 1] == list(range(stored + 1))  # all, in order, no gaps
    assert found == list(range(len(found)))


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Path]:
    """A 1 MB tmpfs: a real full disk (needs root, as CI runs)."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_refuses_new_messages_but_acknowledged_ones_still_leave(tiny_disk):
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * 64 * 1024)  # deleted later: room comes back
    path = str(tiny_disk / "mqtt.sqlite3")
    spool = SqliteSpool(path, 10_000_000)
    size = entry_size(TOPIC, message(0, 4000))
    stored = 0
    try:
        with pytest.raises(SpoolError, match=r"cannot write the spool file .*mqtt.sqlite3: .*full"):
            for seq in range(1000):
                spool.append(TOPIC, message(seq, 4000))
                stored += 1
        assert stored > 20  # it did work until the disk was full
        assert (len(spool), spool.bytes) == (stored, stored * size)
        assert seqs(spool) == list(range(stored))

        # The broker acknowledges the five oldest while the disk is still full.
        for entry in spool.entries_after(0, 5):
            assert spool.remove(entry.id)
        assert (len(spool), spool.bytes) == (stored - 5, (stored - 5) * size)
        assert seqs(spool)[:1] == [5]  # never handed out again

        ballast.unlink()  # room again: the next write also saves the removals
        new_id, dropped = spool.append(TOPIC, message(9999, 4000))
        assert new_id is not None and dropped == 0
    finally:
        spool.close()
    again = SqliteSpool(path, 10_000_000)
    try:
        assert seqs(again) == list(range(5, stored)) + [9999]
    finally:
        again.close()
