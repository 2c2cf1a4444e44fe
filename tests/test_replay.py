"""The replay reader: time order, every skipped row and cell counted, memory flat in file size."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from agent.errors import ConfigError, SensorError
from agent.sensors.base import Reading
from agent.sensors.replay import ReplayFinished, ReplaySensor

T0 = 1_790_000_000


def write(tmp_path, text: str, name: str = "log.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def play(sensor: ReplaySensor):
    readings = []
    while sensor.next_ts() is not None:
        readings.append(sensor.read())
    return readings


def test_every_unusable_row_and_cell_is_counted_by_reason(tmp_path):
    path = write(
        tmp_path,
        f"""
        timestamp,temperature,humidity,pressure
        {T0},21.5,40.1,1013.2
        {T0 + 5},abc,40.2,1013.2
        {T0 + 10},nan,40.3,1013.2
        {T0 + 15},inf,-inf,1013.2
        {T0 + 20},22.0,140,1013.2
        {T0 + 25},22.0,40.4,
        {T0 + 30},22.0,40.5
        yesterday,22.0,40.6,1013.2
        {T0 + 40},22.0

        {T0 + 45},22.1,40.7,1013.1
        """,
    )
    sensor = ReplaySensor(path)
    stats = sensor.stats
    assert stats.rows == 10  # the blank line is not a row
    assert stats.used == 8
    assert stats.skipped_rows == {"unreadable_timestamp": 1, "short_row": 1}
    assert stats.missing_cells == {
        "empty": 2,  # the empty pressure cell and the missing one
        "non_numeric": 1,
        "nan": 1,
        "inf": 2,
        "out_of_range": 1,  # 140 %RH
    }
    readings = play(sensor)
    assert len(readings) == 8
    assert readings[1] == Reading(T0 + 5, None, 40.2, 1013.2)
    assert readings[3] == Reading(T0 + 15, None, None, 1013.2)
    assert readings[4].humidity is None
    text = stats.describe()
    assert "8 of 10 rows played" in text
    # Each reason with the lines of the file it was seen on (the header is line 1).
    assert "2 rows skipped (1 unreadable timestamp (line 9), 1 short row (line 10))" in text
    assert (
        "7 cells read as missing (2 empty (lines 7, 8), 1 not a number (line 3), "
        "1 NaN (line 4), 2 infinite (line 5), 1 out of physical range (line 6))"
    ) in text
    report = stats.as_dict()
    assert report["rows_skipped"]["short_row"] == 1 and report["cells_missing"]["nan"] == 1


@pytest.fixture(params=["UTC", "Asia/Tokyo", "America/St_Johns"])
def machine_zone(request, monkeypatch):
    """The machine's local time zone for one test, whatever zone the test machine runs in."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_iso_times_are_read_with_their_zone_and_without_one_as_utc(tmp_path, machine_zone):
    # Rows play at the instants their text names, whatever zone the machine runs in: a
    # zone-less time read as local time is 9 h off in Tokyo, 3.5 h in Newfoundland.
    from datetime import datetime, timezone

    noon = datetime(2026, 9, 21, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    path = write(
        tmp_path,
        """
        timestamp,temperature,humidity
        2026-09-21T12:00:00Z,21.0,40.0
        2026-09-21T12:00:05,21.1,40.1
        2026-09-21T21:00:10+09:00,21.2,40.2
        2026-09-21T12:00:15.5z,21.3,40.3
        """,
    )
    readings = play(ReplaySensor(str(path)))
    assert [r.ts - noon for r in readings] == [0.0, 5.0, 10.0, 15.5]


def test_when_no_timestamp_can_be_read_the_error_says_so(tmp_path):
    rows = "".join(f"{when},22,40\n" for when in ("yesterday", "soon", "12/31/2026") * 20)
    path = write(tmp_path, "timestamp,temperature,humidity\n" + rows)
    with pytest.raises(ConfigError) as info:
        ReplaySensor(path)
    message = str(info.value)
    assert "none of its 60 data rows has a readable timestamp" in message
    assert "line 2 has 'yesterday'" in message
    assert "no data rows" not in message


def test_a_newest_first_log_is_played_oldest_first_with_a_warning(tmp_path, caplog):
    lines = [f"{T0 + 5 * i},22.0,{40 + i}" for i in range(30)]
    path = write(tmp_path, "timestamp,temperature,humidity\n" + "\n".join(reversed(lines)))
    with caplog.at_level("WARNING", logger="agent.sensors.replay"):
        sensor = ReplaySensor(path)
    assert any("not in time order" in r.getMessage() for r in caplog.records)
    assert not sensor.stats.in_order and sensor.stats.out_of_order == 29
    readings = play(sensor)
    assert [r.ts for r in readings] == [T0 + 5 * i for i in range(30)]
    assert [r.humidity for r in readings] == [40 + i for i in range(30)]
    assert sensor.stats.span == 145 and sensor.period_hint == 5
    assert sensor.stats.describe() == (
        "30 of 30 rows played; not in time order (29 rows earlier than the one before)"
    )


def test_a_reason_seen_on_many_lines_names_the_first_three(tmp_path):
    rows = [f"{T0 + 5 * i},{'x' if i in (1, 3, 4, 6) else 22.0},40" for i in range(8)]
    path = write(tmp_path, "timestamp,temperature,humidity\n" + "\n".join(rows))
    described = ReplaySensor(path).stats.describe()
    assert (
        described
        == "8 of 8 rows played; 4 cells read as missing (4 not a number (lines 3, 5, 6, …))"
    )
    exactly_three = write(
        tmp_path, "timestamp,temperature,humidity\n" + "\n".join(rows[:6]), "3.csv"
    )
    assert ReplaySensor(exactly_three).stats.describe() == (
        "6 of 6 rows played; 3 cells read as missing (3 not a number (lines 3, 5, 6))"
    )


def test_values_at_the_edges_of_what_a_metric_can_be_are_played(tmp_path):
    path = write(
        tmp_path,
        f"""
        timestamp,temperature,humidity,pressure
        {T0},-60,0,200
        {T0 + 5},150,100,1300
        {T0 + 10},-60.1,-0.1,199.9
        {T0 + 15},150.1,100.1,1300.1
        """,
    )
    sensor = ReplaySensor(path)
    assert [(r.temperature, r.humidity, r.pressure) for r in play(sensor)] == [
        (-60, 0, 200),
        (150, 100, 1300),
        (None, None, None),
        (None, None, None),
    ]
    assert sensor.stats.missing_cells["out_of_range"] == 6


def test_a_row_with_cells_but_no_timestamp_is_counted_not_taken_for_a_blank_line(tmp_path):
    path = write(tmp_path, f"timestamp,temperature,humidity\n{T0},21,40\n,22,41\n , , \n")
    stats = ReplaySensor(path).stats
    assert stats.rows == 2 and stats.skipped_rows["unreadable_timestamp"] == 1


def test_a_log_with_repeated_timestamps_is_in_time_order_and_paced_by_its_period(tmp_path):
    # Two sensors logged into one file: each time twice, every 5 s.
    rows = [f"{T0 + 5 * (i // 2)},{21 + i % 2},40" for i in range(20)]
    sensor = ReplaySensor(write(tmp_path, "timestamp,temperature,humidity\n" + "\n".join(rows)))
    assert sensor.stats.in_order and sensor.period_hint == 5
    assert sensor.stats.describe() == "20 of 20 rows played"


def test_a_file_with_no_playable_row_and_some_readable_timestamps_says_why(tmp_path):
    path = write(tmp_path, f"timestamp,temperature,humidity\nyesterday,21,40\n{T0},21\n")
    with pytest.raises(ConfigError) as info:
        ReplaySensor(path)
    assert str(info.value).endswith(
        "none of its rows can be played: 0 of 2 rows played; 2 rows skipped "
        "(1 unreadable timestamp (line 2), 1 short row (line 3))"
    )


def test_a_closed_replay_holds_its_file_no_longer(tmp_path):
    path = write(tmp_path, "timestamp,temperature,humidity\n" + f"{T0},21,40\n{T0 + 5},21,40\n")
    sensor = ReplaySensor(path)
    sensor.read()  # the file is open, streaming the rest

    def open_on_log():
        fds = os.listdir("/proc/self/fd")
        return [fd for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(path)]

    assert open_on_log()
    sensor.close()
    assert open_on_log() == []
    with pytest.raises(SensorError, match="closed"):
        sensor.read()


@pytest.mark.parametrize("chunk_rows", [1, 7, 299, 300, 50_000])
def test_sorting_in_runs_on_disk_gives_the_same_order_and_cleans_up(tmp_path, chunk_rows):
    rng = random.Random(7)
    times = [T0 + rng.randrange(0, 5000) for _ in range(300)]  # duplicates included
    rows = [
        (t, round(20 + i / 100, 2), None if i % 11 == 0 else 40.0, None if i % 7 else 1000.0)
        for i, t in enumerate(times)
    ]
    text = "timestamp,temperature,humidity,pressure\n" + "".join(
        "{},{},{},{}\n".format(t, temp, "" if hum is None else hum, "" if p is None else p)
        for t, temp, hum, p in rows
    )
    path = write(tmp_path, text)
    sensor = ReplaySensor(path, chunk_rows=chunk_rows)
    readings = play(sensor)
    # Stable: rows with the same timestamp keep their order in the file.
    expected = sorted(enumerate(rows), key=lambda item: (item[1][0], item[0]))
    assert [(r.ts, r.temperature, r.humidity, r.pressure) for r in readings] == [
        (float(t), temp, hum, p) for _, (t, temp, hum, p) in expected
    ]
    # Sorted in memory when the file fits in one chunk; else runs in a temporary folder.
    tmpdir = sensor._tmpdir
    assert (tmpdir is not None) == (chunk_rows < 300)
    if tmpdir is not None and chunk_rows == 7:
        shutil.rmtree(tmpdir)  # a cleaner of /tmp got there first: closing still works
    sensor.close()
    assert tmpdir is None or not os.path.exists(tmpdir)


def test_a_sorted_replay_loops_with_time_moving_on(tmp_path):
    path = write(tmp_path, "timestamp,temperature,humidity\n105,21,41\n100,20,40\n")
    sensor = ReplaySensor(path, loop=True, chunk_rows=2)
    assert [sensor.read().ts for _ in range(5)] == [100, 105, 110, 115, 120]
    sensor.close()
    with pytest.raises(Exception, match="closed"):
        sensor.read()


def test_the_end_of_the_file_is_the_end_of_the_replay(tmp_path):
    sensor = ReplaySensor(write(tmp_path, "timestamp,temperature,humidity\n100,20,40\n"))
    assert sensor.read().ts == 100
    assert sensor.next_ts() is None
    with pytest.raises(ReplayFinished):
        sensor.read()


# --- memory: a 100 MB file in at most 100 MB RSS -------------------------------------------

RSS_LIMIT_MB = 100
FILE_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def big_logs(tmp_path_factory):
    """A 100 MB log in time order and the same rows newest-first."""
    folder = tmp_path_factory.mktemp("big-replay")
    paths = {}
    for order in ("oldest-first", "newest-first"):
        path = folder / f"{order}.csv"
        rows = FILE_BYTES // 30 + 1  # rows are 30 bytes
        indices = range(rows) if order == "oldest-first" else range(rows - 1, -1, -1)
        with open(path, "w") as out:
            out.write("timestamp,temperature,humidity,pressure\n")
            batch = []
            for i in indices:
                batch.append(
                    "%d,%.2f,%.2f,%.1f\n"
                    % (T0 + 5 * i, 22 + i % 97 / 100, 40 + i % 53 / 10, 1013.2)
                )
                if len(batch) == 10_000:
                    out.write("".join(batch))
                    batch = []
            out.write("".join(batch))
        assert path.stat().st_size >= FILE_BYTES
        paths[order] = path
    return paths


def _run_child(args):
    """Run ``args``; the child prints its own peak RSS, see the scripts.

    The children read ``VmHWM`` from /proc: ``ru_maxrss`` survives ``execve`` on
    Linux, so a child of a large test process would report the parent's peak.
    """
    process = subprocess.run(args, capture_output=True, text=True, timeout=600)
    return process.returncode, process.stdout, process.stderr


PEAK_MB = (
    "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024"
)

READ_ALL = """
import sys
from agent.sensors.replay import ReplaySensor
sensor = ReplaySensor(sys.argv[1])
n = 0
last = float("-inf")
while sensor.next_ts() is not None:
    reading = sensor.read()
    assert reading.ts >= last
    last = reading.ts
    n += 1
sensor.close()
print(n, {})
""".format(PEAK_MB)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["oldest-first", "newest-first"])
def test_a_100_mb_log_replays_in_under_100_mb_of_memory(big_logs, order):
    status, out, err = _run_child([sys.executable, "-c", READ_ALL, str(big_logs[order])])
    assert status == 0, err
    rows, peak_mb = (int(x) for x in out.split())
    assert rows == FILE_BYTES // 30 + 1
    assert peak_mb <= RSS_LIMIT_MB, f"{peak_mb} MB for {order}"


SIMULATE_RSS = """
import sys
from devtools.cli import main
status = main(sys.argv[1:])
print({}, file=sys.stderr)
raise SystemExit(status)
""".format(PEAK_MB)


@pytest.mark.slow
def test_simulate_on_a_100_mb_newest_first_log_stays_under_100_mb(big_logs, tmp_path):
    status, out, err = _run_child(
        [
            sys.executable,
            "-c",
            SIMULATE_RSS,
            "simulate",
            "--replay",
            str(big_logs["newest-first"]),
            "--fast",
            "--duration",
            "3600",
            "--state-dir",
            str(tmp_path),
        ]
    )
    assert status == 0, err
    peak_mb = int(err.strip().splitlines()[-1])
    assert peak_mb <= RSS_LIMIT_MB
    assert "not in time order" in out
    assert "721 readings" in out  # rows 0 s to 3600 s into the file, 5 s apart


def test_a_log_without_its_header_row_is_refused_saying_line_1_must_be_the_header(tmp_path):
    path = write(tmp_path, f"{T0},21.5,40.1\n{T0 + 5},21.6,40.2\n")
    with pytest.raises(ConfigError) as info:
        ReplaySensor(path)
    message = str(info.value)
    assert f"replay file {path}: line 1 must be the header row naming the columns" in message
    assert "timestamp,temperature,humidity[,pressure]" in message
