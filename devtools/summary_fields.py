"""The ``--json`` summary of ``edge-agent simulate``: its schema name and every field, once.

docs/cli.md's list of fields is generated from :data:`FIELDS` (:func:`markdown_table`), and a
test checks that a run's summary has exactly these fields (those marked ``only`` appear
only then). A field is added, never renamed or given another meaning, within a schema;
anything else is a new schema name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

SUMMARY_SCHEMA = "edge-agent/summary/1"


@dataclass(frozen=True)
class Field:
    name: str  # "a.b" for a key inside an object
    meaning: str
    only: str = ""  # when the field is there only sometimes; empty: always


FIELDS: Tuple[Field, ...] = (
    Field("schema", f'`"{SUMMARY_SCHEMA}"`: the format of this summary'),
    Field("scenario", "the scenario's name, or the replayed file's path"),
    Field("fast", "true when the run was in virtual time (`--fast`)"),
    Field("duration_seconds", "the run's planned length (simulated seconds)"),
    Field("period_seconds", "seconds between readings at the start"),
    Field("simulated_seconds", "how much simulated time the run covered"),
    Field("wall_seconds", "how long the run took on the wall clock"),
    Field("samples", "times the sensor function read the sensor"),
    Field("readings_published", "readings the sensor function published"),
    Field("anomalies_published", "episode events the sensor function published"),
    Field("episodes.breach", "episodes that breached a limit (incidents asked for)"),
    Field("episodes.update", "updates sent for open episodes"),
    Field("episodes.recovered", "episodes that recovered"),
    Field("publish_errors", "publishes the core refused"),
    Field("sensor.errors", "sensor reads that failed (no reading); exit code 5"),
    Field("sensor.invalid_values", "values the sensor marked invalid (a reading with it missing)"),
    Field("sensor.unchanged_streaks", "stretches of identical readings (a stuck sensor?)"),
    Field("messages_to_cloud", "messages the group sent to `cloud`"),
    Field("config_changes_applied", "run-time variable changes applied (`--at`)"),
    Field("config_changes_rejected", "run-time variable changes rejected (`--at`)"),
    Field("incidents_opened", "incidents ServiceNow created"),
    Field("incidents_reused", "incidents found open by correlation id instead of created"),
    Field("incidents_updated", "work notes added"),
    Field("incidents_resolved", "incidents resolved"),
    Field("events_sent", "Event Management events ServiceNow took (`snowSink=event`)"),
    Field("events_cleared", "clears (severity 0) ServiceNow took (`snowSink=event`)"),
    Field("actions_queued", "incident actions the anomaly function put in its outbox"),
    Field("actions_pending", "actions still in the outbox at the end; exit code 1"),
    Field("actions_dead_lettered", "actions ServiceNow refused for good; exit code 3"),
    Field("actions_held", "actions held in memory while the outbox could not be written"),
    Field("actions_dropped", "actions lost because the outbox could not be written"),
    Field("outbox_ok", "false when the outbox could not be written at the end"),
    Field("messages_rejected", "episode events the anomaly function rejected; exit code 3"),
    Field("events_out_of_order", "episode events that arrived after a later one"),
    Field("updates_throttled", "episode updates not sent (at most one per interval)"),
    Field("retries", "ServiceNow attempts that failed and were rescheduled"),
    Field("auth_failures", "actions ServiceNow refused with 401 after one refetch of the secret"),
    Field("secret_fetches", "reads of the ServiceNow secret"),
    Field("servicenow_calls", "calls to ServiceNow by method (`GET`, `POST`, `PATCH`, `TOKEN`)"),
    Field(
        "outages",
        "ServiceNow outages, each a run of failed tries until one went through: "
        "`{since, until, tries, reason}` (epoch seconds; `until` null when it lasted to the "
        "end; `reason` the last failure)",
    ),
    Field("replay", "what the replay played and skipped (rows, cells, time order)", "--replay"),
    Field(
        "mqtt",
        "the MQTT bridge's counts: published, rejected, dropped, lost, kept; exit code 4",
        "--mqtt",
    ),
    Field("incidents_in_standin", "incidents in the local stand-in at the end", "no --snow-url"),
    Field(
        "alerts_in_standin",
        "Event Management alerts the local stand-in derived from the events",
        "no --snow-url",
    ),
    Field("drained", "true when nothing was left to deliver at the end"),
    Field("interrupted", "true after Ctrl-C"),
    Field("state_dir", "the state folder"),
    Field("state_dir_removed", "true when the temporary state folder was removed"),
    Field(
        "open_episodes",
        "the episodes still open at the end (`episode_id`, `metric`, `incident`: its number, or"
        " null before it was opened); the temporary state folder is kept while any is",
    ),
    Field("exit_code", "the exit code (docs/cli.md's table)"),
)


FLEET_SUMMARY_SCHEMA = "edge-agent/fleet-summary/1"

# ``simulate --fleet N --json``: a site's run has another shape (its groups are the incidents),
# so it has its own schema name; docs/site.md lists these fields.
FLEET_FIELDS: Tuple[Field, ...] = (
    Field("schema", f'`"{FLEET_SUMMARY_SCHEMA}"`: the format of this summary'),
    Field("site", "the site's name"),
    Field("scenario", "the site story's name, or the replayed file's path"),
    Field("fast", "true when the run was in virtual time (`--fast`)"),
    Field("simulated_seconds", "how much simulated time the run covered"),
    Field("wall_seconds", "how long the run took on the wall clock"),
    Field("devices.count", "sensor functions (Pis) in the run"),
    Field("devices.by_state", "devices by state at the end: `normal`, `breach`, `silent`"),
    Field("readings", "readings the gateway received"),
    Field("episodes.breach", "device episodes that breached a limit"),
    Field("episodes.update", "updates sent for open device episodes"),
    Field("episodes.recovered", "device episodes that recovered"),
    Field(
        "groups",
        "one per site event: `correlation_id`, `number`, `members`, `actions`, "
        "`servicenow_calls`, and `state` in the local stand-in",
    ),
    Field("servicenow_calls", "calls to ServiceNow in all"),
    Field("breaching_readings", "readings beyond a limit, across all devices"),
    Field("drained", "true when nothing was left to deliver at the end"),
    Field("incidents_opened", "incidents ServiceNow created"),
    Field("incidents_updated", "work notes added"),
    Field("incidents_resolved", "incidents resolved"),
    Field("actions_pending", "actions still in the outbox at the end; exit code 1"),
    Field("actions_dead_lettered", "actions ServiceNow refused for good"),
    Field("incidents_in_standin", "incidents in the local stand-in at the end", "no --snow-url"),
    Field("exit_code", "0 when everything was delivered, else 1"),
)


def markdown_table(fields: Tuple[Field, ...] = FIELDS) -> str:
    """The list of a ``--json`` summary's fields: docs/cli.md's, or docs/site.md's (fleet)."""
    rows = ["| field | meaning | only with |", "| --- | --- | --- |"]
    for field in fields:
        rows.append("| `{}` | {} | {} |".format(field.name, field.meaning, field.only))
    return "\n".join(rows)
