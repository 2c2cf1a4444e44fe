"""The exit codes of ``edge-agent simulate`` (and ``edge-agent run``): one table, one rule.

The exit-code table in docs/cli.md is generated from :data:`EXIT_CODES` (a test checks it is
there verbatim). A run exits 0 only when every reading and every incident
action was delivered; when several things went wrong the first that applies
in :func:`exit_code_for`'s order wins: interrupted, refused, lost, pending, sensor.
``edge-agent outbox`` has its own table, :data:`OUTBOX_EXIT_CODES`, generated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

OK = 0
PENDING = 1
BAD_CONFIGURATION = 2
REFUSED = 3
MQTT_LOST = 4
SENSOR_FAILED = 5
INTERRUPTED = 130


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str
    what_to_do: str


EXIT_CODES: Tuple[ExitCode, ...] = (
    ExitCode(
        OK,
        "every sensor read gave a reading, and every reading and every incident action was "
        "delivered",
        "nothing",
    ),
    ExitCode(
        PENDING,
        "incident actions were left in the outbox (ServiceNow could not be reached in time)",
        "run again with the same `--state-dir`: they are delivered first",
    ),
    ExitCode(
        BAD_CONFIGURATION,
        "bad command line, config file, variable, secret file, replay file or state folder; "
        "found before the run started, so nothing ran",
        "read the message: it names the option, variable or file and what was expected",
    ),
    ExitCode(
        REFUSED,
        "incident actions were refused for good: ServiceNow rejected them "
        "(dead-lettered, e.g. 403) or the anomaly function rejected the event",
        "fix the cause (the integration user's roles, say), then "
        "`edge-agent outbox --state-dir DIR --requeue-dead`",
    ),
    ExitCode(
        MQTT_LOST,
        "MQTT messages for the cloud were not delivered: lost, dropped from a full spool, "
        "refused by the broker, or left in the spool file (see `mqtt` in the `--json` summary)",
        "check the broker address, certificates and policy the console names",
    ),
    ExitCode(
        SENSOR_FAILED,
        "`simulate`: sensor reads failed (I/O errors), so those samples have no reading "
        "(`sensor.errors` in the `--json` summary; the last console line counts them and the "
        "invalid values); everything read was delivered",
        "on a Pi: check the Sense HAT's seating and the I²C bus (`i2cdetect -y 1`); "
        "with `--scenario io-errors` it is what was asked for",
    ),
    ExitCode(
        INTERRUPTED,
        "interrupted (Ctrl-C); the summary so far was printed",
        "run again; with `--state-dir` queued actions are kept",
    ),
)


# ``edge-agent outbox``: its own table (it reads a state folder; it runs nothing). The worst
# that applies wins, in this order: loss, dead letters, pending.
OUTBOX_OK = 0
OUTBOX_CHECK_REFUSED = 1
OUTBOX_ABSENT = 2
OUTBOX_LOSS = 3
OUTBOX_DEAD_LETTERS = 4
OUTBOX_PENDING = 5

OUTBOX_EXIT_CODES: Tuple[ExitCode, ...] = (
    ExitCode(
        OUTBOX_OK,
        "status `ok`: every action was delivered; nothing pending, nothing dead-lettered, "
        "no sign of loss",
        "nothing",
    ),
    ExitCode(
        OUTBOX_CHECK_REFUSED,
        "`--check` refused: the anomaly function is running (it changes the log under it)",
        "stop the function, then run `--check` again",
    ),
    ExitCode(
        OUTBOX_ABSENT,
        "status `absent`: there is no outbox in the folder (none was ever made there)",
        "check `--state-dir`: it is the anomaly function's `stateDir`",
    ),
    ExitCode(
        OUTBOX_LOSS,
        "status `loss`: actions may have been lost (an outbox missing, damaged, behind its "
        "marker, or moved aside)",
        "check ServiceNow for the episodes of that time, then `--acknowledge`",
    ),
    ExitCode(
        OUTBOX_DEAD_LETTERS,
        "status `dead_letters`: ServiceNow refused actions for good (e.g. 403)",
        "fix the cause (the integration user's roles, say), then `--requeue-dead`",
    ),
    ExitCode(
        OUTBOX_PENDING,
        "status `pending`: actions wait for ServiceNow; the anomaly function delivers them "
        "when it runs",
        "nothing, if the agent runs; else start it with the same state folder",
    ),
)
OUTBOX_STATUS_CODES = {
    "ok": OUTBOX_OK,
    "absent": OUTBOX_ABSENT,
    "loss": OUTBOX_LOSS,
    "dead_letters": OUTBOX_DEAD_LETTERS,
    "pending": OUTBOX_PENDING,
}


def exit_code_for(summary: Mapping[str, Any]) -> int:
    """The exit code a finished (or interrupted) run's summary earns."""
    if summary.get("interrupted"):
        return INTERRUPTED
    if summary.get("actions_dead_lettered", 0) or summary.get("messages_rejected", 0):
        return REFUSED
    if mqtt_undelivered(summary):
        return MQTT_LOST
    if summary.get("actions_pending", 0) or not summary.get("drained", True):
        return PENDING
    if sensor_failures(summary):
        return SENSOR_FAILED
    return OK


def sensor_failures(summary: Mapping[str, Any]) -> int:
    """Sensor reads that failed (0 where the summary has none). A value the sensor marked
    invalid still makes a reading (with that value missing, as a replay's empty cell does):
    counted on the last line, not in the exit code."""
    return int((summary.get("sensor") or {}).get("errors", 0))


def mqtt_undelivered(summary: Mapping[str, Any]) -> int:
    """MQTT messages of this run that did not reach the broker (0 without ``--mqtt``)."""
    mqtt = summary.get("mqtt") or {}
    return sum(int(mqtt.get(key, 0)) for key in ("lost", "dropped", "rejected", "kept"))


def meaning(code: int) -> str:
    for entry in EXIT_CODES:
        if entry.code == code:
            return entry.meaning
    return "unknown"


def markdown_table(codes: Tuple[ExitCode, ...] = EXIT_CODES) -> str:
    """An exit-code table of docs/cli.md (``OUTBOX_EXIT_CODES``: ``edge-agent outbox``'s)."""
    rows = ["| exit code | meaning | what to do |", "| --- | --- | --- |"]
    for entry in codes:
        rows.append(f"| {entry.code} | {entry.meaning} | {entry.what_to_do} |")
    return "\n".join(rows)


# ``edge-agent check-servicenow``: its own, smaller table (see agent/servicenow/check.py).
CHECK_EXIT_CODES: Tuple[ExitCode, ...] = (
    ExitCode(
        OK,
        "every check passed (and the test incident, if asked, was opened and resolved)",
        "nothing",
    ),
    ExitCode(
        1,
        "ServiceNow could not be reached as a Table API: the name does not resolve, no "
        "connection, TLS does not verify, a login page or a hibernating instance answers, "
        "or no answer in time",
        "the line names the check and the fix: snowUrl, DNS, firewall, snowVerifyTls, wake the instance",
    ),
    ExitCode(
        BAD_CONFIGURATION,
        "bad command line, variable or secret file; nothing was checked",
        "read the message: it names the option, variable or file",
    ),
    ExitCode(
        REFUSED,
        "ServiceNow refused: the credentials, a role (read incident or cmdb_ci, "
        "evt_mgmt_integration for events, create on incident), or the configured CI is not there",
        "the line names the check and the role or setting to fix",
    ),
)


def check_markdown_table() -> str:
    """The exit-code table of ``edge-agent check-servicenow``."""
    rows = ["| exit code | meaning | what to do |", "| --- | --- | --- |"]
    for entry in CHECK_EXIT_CODES:
        rows.append(f"| {entry.code} | {entry.meaning} | {entry.what_to_do} |")
    return "\n".join(rows)
