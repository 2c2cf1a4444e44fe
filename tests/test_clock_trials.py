"""Whole runs of ``edge-agent run`` whose wall clock steps, as a Pi's does: NTP correcting a
fast clock (back 1 h), a Pi without a real-time clock booting at 1970 and being set later.

The agent is a real process under an ``LD_PRELOAD`` shim (``clock_shift.py``) that moves
only its ``CLOCK_REALTIME``; ServiceNow is the stand-in in its own process. The sensor
is a replay whose timestamps are what the Pi's wall clock said at each reading (a replay
plays a file in time order, so a step back shows across runs, not within one file).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import List, Tuple

import pytest
from clock_shift import ShiftedClock
from conftest import SNOW_USER, secret_json
from helpers import wait_until

from devtools.servicenow_standin import StandInProcess

log = logging.getLogger(__name__)
EDGE_AGENT = [sys.executable, "-m", "devtools.cli"]
PERIOD = 0.5
HOUR = 3600.0


def _replay(
    path, phases: List[Tuple[float, float]], start: float, step_at: float = -1.0, step: float = 0.0
):
    """A replay CSV of ``phases`` ((seconds, humidity) each) from wall time ``start``, one
    row per PERIOD; rows from ``step_at`` seconds on are stamped ``step`` seconds off."""
    rows = ["timestamp,temperature,humidity"]
    t = 0.0
    for seconds, humidity in phases:
        for _ in range(int(round(seconds / PERIOD))):
            stamp = start + t + (step if 0 <= step_at <= t else 0.0)
            rows.append("{:.3f},21.0,{}".format(stamp, humidity))
            t += PERIOD
    path.write_text("\n".join(rows) + "\n")
    return path


class Run:
    """``edge-agent run`` in its own process, its output in a file."""

    def __init__(self, tmp_path, name, snow, clock, replay, device="pi-clock"):
        self.log_path = tmp_path / "{}.log".format(name)
        args = ["run", "--sensor", "replay", "--thing", device]
        args += ["--secret-file", str(tmp_path / "secret.json")]
        args += ["--state-dir", str(tmp_path / "state")]
        for setting in (
            "period={}".format(PERIOD),
            "snowUrl=" + snow.url,
            "retryBaseSeconds=2",
            "retryMaxSeconds=4",
        ):
            args += ["--set", setting]
        env = clock.env()
        env.update(EDGE_AGENT_REPLAY=str(replay), PYTHONUNBUFFERED="1")
        env.pop("EDGE_AGENT_RUNTIME", None)
        with open(self.log_path, "w") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                EDGE_AGENT + args, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def trial(tmp_path, password):
    (tmp_path / "secret.json").write_text(secret_json(password))
    with StandInProcess(users={SNOW_USER: password}) as snow:
        log.info("ServiceNow stand-in at %s; the agent's clock moves by %s", snow.url, tmp_path)
        yield snow, ShiftedClock(str(tmp_path))


def _retry_pending(run: Run) -> bool:
    return "kept in the outbox, try" in run.output()


def test_the_clock_stepped_back_an_hour_mid_episode_resolves_the_incident(tmp_path, trial):
    """ServiceNow is down when a humid spell opens an episode: the create waits its
    back-off. Then NTP steps the Pi's clock back an hour, ServiceNow comes back, and the
    spell ends. Before, the create waited the hour as well (back-off on the wall clock):
    nothing was delivered before the run ended."""
    snow, clock = trial
    snow.faults.down = True
    replay = _replay(tmp_path / "readings.csv", [(10, 62.0), (14, 40.0)], clock.now())
    run = Run(tmp_path, "run", snow, clock, replay)
    try:
        assert wait_until(lambda: _retry_pending(run), 20), run.output()
        clock.step(-HOUR)
        snow.faults.down = False
        up = time.monotonic()
        assert wait_until(snow.incidents, 15), "no incident after the step:\n" + run.output()
        opened_after = time.monotonic() - up
        code = run.wait(60)
    finally:
        run.close()
    output = run.output()
    (incident,) = snow.incidents()
    log.info("create delivered %.1f s after ServiceNow came back", opened_after)
    assert incident["state"] == "6", output  # resolved
    assert code == 0, output
    assert "started_at is after ts" not in output
    assert opened_after <= 4.0 + 3.0  # its back-off (retryMaxSeconds 4), not the hour


def test_a_retry_kept_on_disk_waits_its_back_off_after_a_restart_with_the_clock_set_back(
    tmp_path, trial
):
    """A run is killed while its create waits for ServiceNow; the clock is stepped back an
    hour; the next run (ServiceNow up, the spell over) opens the incident within its
    back-off and resolves it. Before, the stored retry time was an hour ahead of the
    clock and the recovery was refused: nothing was delivered."""
    snow, clock = trial
    snow.faults.down = True
    first = Run(
        tmp_path, "first", snow, clock, _replay(tmp_path / "a.csv", [(60, 62.0)], clock.now())
    )
    try:
        assert wait_until(lambda: _retry_pending(first), 20), first.output()
    finally:
        first.kill()
    clock.step(-HOUR)
    snow.faults.down = False
    replay = _replay(tmp_path / "b.csv", [(12, 40.0)], clock.now())
    second = Run(tmp_path, "second", snow, clock, replay)
    started = time.monotonic()
    try:
        assert wait_until(snow.incidents, 15), (
            "nothing delivered after the restart:\n" + second.output()
        )
        opened_after = time.monotonic() - started
        code = second.wait(60)
    finally:
        second.close()
    output = second.output()
    (incident,) = snow.incidents()
    log.info("create delivered %.1f s after the restart", opened_after)
    assert incident["state"] == "6", output
    assert code == 0, output
    assert "stepped back" in output  # the rebase is said
    assert opened_after <= 4.0 + 8.0  # start-up plus its back-off, not the hour


def _episode_runs(tmp_path, snow, clock, boots):
    """``boots`` runs of the agent, each a Pi booting at 1970 (no real-time clock, NTP not
    there yet) and seeing a short humid spell that ends before it stops."""
    codes, outputs = [], []
    for boot in range(boots):
        clock.set_to(12.0)  # every boot starts the clock near the epoch
        replay = _replay(tmp_path / "boot{}.csv".format(boot), [(3, 62.0), (5, 40.0)], clock.now())
        run = Run(tmp_path, "boot{}".format(boot), snow, clock, replay)
        codes.append(run.wait(60))
        outputs.append(run.output())
    return codes, outputs


def test_reboots_at_1970_never_lose_an_episode(tmp_path, trial):
    """Three reboots before NTP, one humid spell each: three incidents, each resolved.
    Before, every episode id ended in the same second near 0, and the second and third
    spells were dropped as a "repeated breach" (exit 0, at INFO)."""
    snow, clock = trial
    codes, outputs = _episode_runs(tmp_path, snow, clock, 3)
    incidents = snow.incidents()
    log.info("%d of 3 episodes reached ServiceNow", len(incidents))
    assert codes == [0, 0, 0], outputs
    assert len(incidents) == 3, outputs
    assert len({i["correlation_id"] for i in incidents}) == 3
    assert all(i["state"] == "6" for i in incidents), incidents
    assert not any("repeated" in output for output in outputs)


def test_an_incident_from_a_clock_not_yet_set_states_no_1970_date(tmp_path, trial):
    """A Pi boots at 1970 with the kernel saying the clock is not synchronised (adjtimex
    STA_UNSYNC); a humid spell starts; NTP then sets the clock; the spell ends. The
    incident says the clock was not set when it started, and the duration measured.
    Before: "Episode started: 1970-01-01 00:00:12 UTC" and "lasted 29944190.9 min"."""
    snow, clock = trial
    clock.set_to(12.0)
    clock.unsynchronised()
    booted = time.time()
    rows = ["timestamp,temperature,humidity"]
    rows += ["{:.3f},21.0,62.0".format(12.0 + PERIOD * i) for i in range(6)]  # 3 s at 1970
    rows += ["{:.3f},21.0,40.0".format(booted + 3 + PERIOD * i) for i in range(10)]  # set
    (tmp_path / "readings.csv").write_text("\n".join(rows) + "\n")
    run = Run(tmp_path, "run", snow, clock, tmp_path / "readings.csv")
    try:
        assert wait_until(lambda: "queued open" in run.output(), 20), run.output()
        clock.set_to(time.time())  # NTP
        clock.unsynchronised(False)
        code = run.wait(60)
    finally:
        run.close()
    output = run.output()
    (incident,) = snow.incidents()
    notes = [entry["value"] for entry in incident["_journal"]]
    text = "\n".join([incident["description"], *notes])
    log.info("incident text from a clock set mid-episode:\n%s", text)
    assert code == 0, output
    assert "1970" not in text, text
    assert "Episode started: not known (the device's clock was not set yet)" in text
    (back,) = [n for n in notes if n.startswith("Back within limit at ")]
    lasted = float(back.rsplit("lasted ", 1)[1].split(" min")[0])
    assert 0.05 <= lasted <= 0.2, back  # the 3 s spell plus the debounce, not 56 years
