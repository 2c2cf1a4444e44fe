"""The exit codes of ``edge-agent simulate`` (and ``edge-agent run``): one table, one rule.

The exit-code table in docs/cli.md is generated from :data:`EXIT_CODES` (a test checks it is
there verbatim). A run exits 0 only when every reading and every incident
action was delivered; when several things went wrong the first that applies
in :func:`exit_code_for`'s order wins: interrupted, refused, lost, pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

OK = 0
PENDING = 1
BAD_CONFIGURATION = 2
REFUSED = 3
MQTT_LOST = 4
INTERRUPTED = 130


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str
    what_to_do: str


EXIT_CODES: Tuple[ExitCode, ...] = (
    ExitCode(OK, "every reading and every incident action was delivered", "nothing"),
    ExitCode(
        PENDING,
        "incident actions were left in the outbox (ServiceNow could not be reached in time)",
        "run again with the same `--state-dir`: they are delivered first",
    ),
    ExitCode(
        BAD_CONFIGURATION,
        "bad command line, variable, secret file, replay file or state folder; "
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
        INTERRUPTED,
        "interrupted (Ctrl-C); the summary so far was printed",
        "run again; with `--state-dir` queued actions are kept",
    ),
)


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
    return OK


def mqtt_undelivered(summary: Mapping[str, Any]) -> int:
    """MQTT messages of this run that did not reach the broker (0 without ``--mqtt``)."""
    mqtt = summary.get("mqtt") or {}
    return sum(int(mqtt.get(key, 0)) for key in ("lost", "dropped", "rejected", "kept"))


def meaning(code: int) -> str:
    for entry in EXIT_CODES:
        if entry.code == code:
            return entry.meaning
    return "unknown"


def markdown_table() -> str:
    """The exit-code table of docs/cli.md."""
    rows = ["| exit code | meaning | what to do |", "| --- | --- | --- |"]
    for entry in EXIT_CODES:
        rows.append(f"| {entry.code} | {entry.meaning} | {entry.what_to_do} |")
    return "\n".join(rows)
