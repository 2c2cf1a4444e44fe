"""docs/cli.md's troubleshooting table: what the console says, the exit code, what to do.

Each entry quotes a message the tools really print for the example in
``example``; ``tests/test_troubleshooting.py`` runs every example and checks
the message and the exit code, and that docs/cli.md carries :func:`markdown_table`
verbatim, so the table cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from agent.standalone.exit_codes import BAD_CONFIGURATION, OK, PENDING, REFUSED


@dataclass(frozen=True)
class Trouble:
    key: str
    example: str  # the command (and situation) that shows it
    message: str  # printed verbatim (a part of the line)
    exit_code: int
    fix: str


TROUBLES: Tuple[Trouble, ...] = (
    Trouble(
        "misspelt-variable",
        "`simulate --set humidLimt=55`",
        "unknown variable 'humidLimt' in --set humidLimt=55; did you mean humidLimit?",
        BAD_CONFIGURATION,
        "Names are case-sensitive; `edge-agent config-table` lists every variable.",
    ),
    Trouble(
        "config-file-typo",
        "`run --config /etc/edge-agent/config.ini` with `humidLimt = 55` under `[variables]`",
        "[variables] humidLimt: unknown variable; did you mean humidLimit?",
        BAD_CONFIGURATION,
        "The line names the file and its line: `[run]` holds `run`'s options by their long "
        "names, `[variables]` what `--set` sets. Under systemd it is in `journalctl -u "
        "edge-agent`, and the service is not restarted until the file is fixed.",
    ),
    Trouble(
        "limit-out-of-range",
        "`simulate --set humidLimit=-5`",
        "humidLimit must be between 0 and 100 %RH (what a humidity reading can be), got -5",
        BAD_CONFIGURATION,
        "Both functions and `deploy v2 plan`/`v2 up` check every variable the same way; pick a "
        "value inside the range.",
    ),
    Trouble(
        "secret-shape",
        '`simulate --secret-file snow.json` with `{"username": "edge"}` in it',
        "secret file snow.json needs 'username' and 'password' for basic auth",
        BAD_CONFIGURATION,
        'The file holds the secret\'s value as stored in Secrets Manager: `{"username": '
        '..., "password": ...}`, or `{"client_id": ..., "client_secret": ...}` for OAuth.',
    ),
    Trouble(
        "snow-url-without-secret",
        "`simulate --snow-url https://dev1.service-now.com`",
        "--snow-url needs --secret-file FILE",
        BAD_CONFIGURATION,
        "Pass the instance's credentials with `--secret-file`; without `--snow-url` the "
        "local stand-in accepts whatever the secret file holds.",
    ),
    Trouble(
        "negative-outage",
        "`simulate --outage -60:600`",
        "--outage START must not be negative (seconds into the run), got -60",
        BAD_CONFIGURATION,
        "START and DURATION are seconds from the start of the run: `--outage 60:600`.",
    ),
    Trouble(
        "replay-timestamps",
        "`simulate --replay log.csv` where no timestamp can be read",
        "none of its 3 data rows has a readable timestamp",
        BAD_CONFIGURATION,
        "Timestamps must be epoch seconds or ISO-8601 (`2026-09-21T12:00:00Z`; no zone means UTC).",
    ),
    Trouble(
        "replay-out-of-order",
        "`simulate --replay log.csv` with the newest row first",
        "not in time order (2 rows earlier than the one before)",
        OK,
        "Nothing to do: the rows are played sorted by time; the summary counts them.",
    ),
    Trouble(
        "corrupt-state",
        "`simulate --state-dir state` where `state/outbox.sqlite3` is damaged",
        "is not a readable SQLite database",
        BAD_CONFIGURATION,
        "Move the damaged file aside (its actions cannot be read) or choose another `--state-dir`.",
    ),
    Trouble(
        "dead-lettered",
        "ServiceNow answers 403 to every write",
        "moved to the dead-letter table",
        REFUSED,
        "Give the integration user the roles to create and update incidents (`itil`), then "
        "`edge-agent outbox --state-dir DIR --requeue-dead` and run again with that folder.",
    ),
    Trouble(
        "actions-pending",
        "ServiceNow down until the end of the run",
        "actions left in the outbox",
        PENDING,
        "Run again with the same `--state-dir` once ServiceNow is reachable: queued actions "
        "go first, without duplicates.",
    ),
    Trouble(
        "i2c-no-bus",
        "`run --sensor i2c` on a Pi with I2C off (no `/dev/i2c-1`)",
        "no I2C bus /dev/i2c-1: I2C is not enabled on this Pi",
        BAD_CONFIGURATION,
        "`sudo raspi-config nonint do_i2c 0` (or raspi-config > Interface Options > I2C); on "
        "another bus, set `i2cBus`; in a Greengrass V1 container, `/dev/i2c-1` must be a "
        "device resource of the sensor function. Permission denied instead: `sudo usermod "
        "-aG i2c USER`, then log in again or restart the core.",
    ),
    Trouble(
        "i2c-no-chip",
        "`run --sensor i2c` where the Sense HAT is not seated",
        "no answer from the HTS221 (humidity, temperature) at address 0x5F on /dev/i2c-1",
        BAD_CONFIGURATION,
        "Power off, seat the HAT on the GPIO header; `i2cdetect -y 1` should show `5c` and "
        "`5f`. Another chip answering says so with its WHO_AM_I; on another bus, set `i2cBus`.",
    ),
    Trouble(
        "deploy-without-boto3",
        "`deploy v2 plan` where boto3 is not installed",
        "install the deploy extra: pip install 'edge-agent[deploy]'",
        1,
        "`pip install 'edge-agent[deploy]'` (`./dev` installs it).",
    ),
    Trouble(
        "deploy-out-unusable",
        "`deploy v2 plan --out notes.txt/plan` (a file, or a read-only folder)",
        "cannot use notes.txt/plan: Not a directory",
        1,
        "Give `--out` a folder you can write.",
    ),
)


def markdown_table() -> str:
    """docs/cli.md's troubleshooting table."""
    rows = [
        "| when | the console says | exit | what to do |",
        "| --- | --- | --- | --- |",
    ]
    for trouble in TROUBLES:
        message = trouble.message.replace("|", "\\|")
        rows.append(f"| {trouble.example} | `{message}` | {trouble.exit_code} | {trouble.fix} |")
    return "\n".join(rows)
