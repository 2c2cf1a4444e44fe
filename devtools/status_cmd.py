"""``edge-agent status --state-dir DIR``: the agent's state on one screen, from the state dir alone.

Works with the functions down: it reads the anomaly function's outbox
read-only (SQLite ``mode=ro``), the sensor's state files and the lock files
(``/proc/locks`` says who holds them), and changes nothing. ``--json`` gives
the same as an object. Exit status: 0 when the state dir could be read, 2 when
it does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from agent.config import DEFAULT_STATE_DIR
from agent.servicenow.notices import read_notices
from agent.status.document import build, duration
from agent.status.model import StatusModel
from agent.status.settings import StatusSettings
from agent.status.store import OUTBOX_FILE, OutboxReader, locks, sensor_states

WIDTH = 14


DESCRIPTION = (
    "Open episodes, outbox, last errors and lock holders, read from the state dir "
    "(works while the functions are down; changes nothing)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent status")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent status``."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"the functions' stateDir (default: {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


def collect(state_dir: str, now: Optional[float] = None) -> Dict[str, Any]:
    """What the state dir says, as one JSON-ready object."""
    now = time.time() if now is None else now
    reader = OutboxReader(os.path.join(state_dir, OUTBOX_FILE))
    try:
        views = {
            "outbox": reader.view(),
            "sensor_state": sensor_states(state_dir),
            "locks": locks(state_dir),
        }
    finally:
        reader.close()
    settings = StatusSettings.from_mapping({"stateDir": state_dir})
    doc = build(StatusModel(history=1), views, settings, now, window=0.0)
    return {
        "state_dir": os.path.abspath(state_dir),
        "generated_at": now,
        "device": doc["device"],
        "open_episodes": doc["open_episodes"],
        "outbox": doc["delivery"]["outbox"],
        "recent_incidents": doc["incidents"][:10],
        "sensor_state": views["sensor_state"],
        "locks": views["locks"],
        "servicenow": read_notices(state_dir),
    }


def render(report: Dict[str, Any]) -> str:
    """The one-screen text."""
    now = report["generated_at"]
    lines = [
        "edge-agent status of {} at {}".format(report["state_dir"], _utc(now)),
        _row("device", report["device"] or "(unknown: no sensor state yet)"),
    ]
    episodes = report["open_episodes"]
    lines.append(_row("open episodes", str(len(episodes)) if episodes else "none"))
    for ep in episodes:
        incident = (ep.get("incident") or {}).get("number") or "no incident yet"
        lines.append(
            "  {} {} since {} ({} ago), peak {}; {}; {}".format(
                ep.get("metric"),
                "below" if ep.get("bound") == "lower" else "above",
                _utc(ep.get("started_at")),
                duration(now - ep["started_at"]) if ep.get("started_at") else "?",
                ep.get("peak"),
                incident,
                ep["id"],
            )
        )
    lines += _outbox_lines(report["outbox"], now)
    lines += _servicenow_lines(report.get("servicenow") or {})
    recent = report["recent_incidents"]
    if recent:
        lines.append(
            _row(
                "recent",
                "; ".join(
                    "{} {} {}".format(i.get("number") or "?", i["action"], _utc(i["at"]))
                    for i in recent[:4]
                ),
            )
        )
    for state in report["sensor_state"]:
        name = os.path.basename(state["path"])
        if state.get("error"):
            lines.append(_row("sensor state", state["error"]))
        else:
            lines.append(
                _row(
                    "sensor state",
                    "{} written {} ago; {} unpublished event{}".format(
                        name,
                        duration(now - state.get("modified_at", now)),
                        state["held_events"],
                        "" if state["held_events"] == 1 else "s",
                    ),
                )
            )
    for state in report["sensor_state"]:
        recovered = state.get("recovered")
        if recovered:
            at = recovered.get("at")
            when = " ({} ago)".format(duration(now - at)) if isinstance(at, (int, float)) else ""
            lines.append(_row("recovered", recovered["what"] + when))
    if not report["sensor_state"]:
        lines.append(_row("sensor state", "none in this directory"))
    lines.append(_row("locks", "; ".join(_lock_text(lock) for lock in report["locks"]) or "none"))
    return "\n".join(lines)


def _outbox_lines(outbox: Dict[str, Any], now: float) -> List[str]:
    if not outbox.get("available"):
        return [_row("outbox", outbox.get("error") or "not readable")]
    text = "{} pending".format(outbox["pending"])
    if outbox["pending"]:
        text += " (oldest {}, up to {} tries)".format(
            duration(outbox["oldest_pending_age_seconds"]), outbox["most_attempts"]
        )
    text += "; {} dead-lettered".format(outbox["dead_letters"])
    if outbox["dead_letters"]:
        text += " (oldest {}; edge-agent outbox --requeue-dead once fixed)".format(
            duration(outbox["oldest_dead_age_seconds"])
        )
    lines = [_row("outbox", text)]
    errors = []
    for action in outbox.get("pending_actions") or ():
        if action.get("last_error"):
            errors.append(
                "  pending {} {}: {} (try {}, next at {})".format(
                    action["kind"],
                    action["key"],
                    action["last_error"],
                    action["attempts"],
                    _utc(action["next_attempt_at"]),
                )
            )
    for action in outbox.get("dead_letter_actions") or ():
        errors.append(
            "  dead    {} {}: {}{} ({} ago)".format(
                action["kind"],
                action["key"],
                "{} ".format(action["status"]) if action.get("status") else "",
                action["reason"],
                duration(now - action["dead_at"]),
            )
        )
    lines.append(_row("last errors", "none" if not errors else ""))
    return lines + errors[:8]


def _servicenow_lines(notices: Dict[str, Any]) -> List[str]:
    """The sink, a CI name that was not found, the rate-limit budget ServiceNow announced."""
    lines = []
    if notices.get("sink"):
        lines.append(_row("sink", str(notices["sink"])))
    if notices.get("ci_missing"):
        lines.append(
            _row(
                "CI",
                "not found in cmdb_ci: {} (incidents open without a CI)".format(
                    notices["ci_missing"]
                ),
            )
        )
    budget = notices.get("rate_limit")
    if isinstance(budget, dict) and budget.get("limit"):
        lines.append(
            _row(
                "rate limit",
                "{} of {} requests left until {}{}".format(
                    budget.get("remaining"),
                    budget["limit"],
                    _utc(budget.get("reset")),
                    " (rule {})".format(budget["rule"]) if budget.get("rule") else "",
                ),
            )
        )
    return lines


def _lock_text(lock: Dict[str, Any]) -> str:
    name = os.path.basename(lock["path"])
    holders = lock.get("holders") or []
    if holders:
        return "{} held by {}".format(
            name,
            ", ".join(
                "pid {}{}".format(h["pid"], "" if h["alive"] else " (gone)") for h in holders
            ),
        )
    recorded = lock.get("recorded")
    if recorded:
        try:  # the functions write {"pid", "function", "since"} (agent/state_dir.py)
            record = json.loads(recorded)
            recorded = "pid {} ({}) since {}".format(
                record["pid"], record.get("function", "?"), record.get("since", "?")
            )
        except (ValueError, TypeError, KeyError):
            pass
    return "{} free{}".format(name, " (last held by {})".format(recorded) if recorded else "")


def _row(name: str, text: str) -> str:
    return "{:<{}}{}".format(name, WIDTH, text).rstrip()


def _utc(ts: Optional[float]) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    return handle(parser.parse_args(argv), parser)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``edge-agent status`` with its parsed options."""
    if not os.path.isdir(args.state_dir):
        print(
            "edge-agent status: no state directory at {} (give the functions' stateDir with "
            "--state-dir)".format(args.state_dir),
            file=sys.stderr,
        )
        return 2
    report = collect(args.state_dir)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        print(render(report))
    return 0
