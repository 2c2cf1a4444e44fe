"""The replay reader: time order, every skipped row and cell counted, memory flat in file size."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import pytest

from agent.errors import ConfigError
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


def test_iso_times_are_read_with_their_zone_and_without_one_as_utc(tmp_path):
    # Rows play at the instants their text names, whatever zone the machine runs in (CI runs this
    # module under TZ=Asia/Tokyo as well: a zone-less time read as local time is 9 h off).
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


@pytest.mark.parametrize("chunk_rows", [2, 7, 50_000])
def test_sorting_in_runs_on_disk_gives_the_same_order_and_cleans_up(tmp_path, chunk_rows):
    rng = random.Random(7)
    times = [T0 + rng.randrange(0, 5000) for _ in range(300)]  # duplicates included
    rows = [(t, round(20 + i / 100, 2), None if i % 11 == 0 else 40.0) for i, t in enumerate(times)]
    text = "timestamp,temperature,humidity\n" + "".join(
        "{},{},{}\n".format(t, temp, "" if hum is None else hum) for t, temp, hum in rows
    )
    path = write(tmp_path, text)
    sensor = ReplaySensor(path, chunk_rows=chunk_rows)
    readings = play(sensor)
    # Stable: rows with the same timestamp keep their order in the file.
    expected = sorted(enumerate(rows), key=lambda item: (item[1][0], item[0]))
    assert [(r.ts, r.temperature, r.humidity) for r in readings] == [
        (float(t), temp, hum) for _, (t, temp, hum) in expected
    ]
    tmpdir = sensor._tmpdir
    assert (tmpdir is not None) == (chunk_rows < 300)
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
