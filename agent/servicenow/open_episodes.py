"""What the outbox says is still open for a device: the truth when a sensor's state is lost.

A sensor whose state file is unreadable, with no good copy, would start with no
episodes: readings still beyond a limit would open a second incident and the
first would stay open for ever. The outbox (in the same state folder) knows
every episode whose breach was queued and whose recovery was not: those
episodes go on, so a breach of the same metric continues the incident and
normal readings resolve it.

Only episodes whose correlation id is the episode id itself (``edge-agent:`` +
id, as :func:`.incidents.correlation_id` keeps every query-safe id) can be told
apart by device and metric; a mapped one is left to a person. Read-only; the
outbox may be locked by a running anomaly function (WAL: readers do not wait).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Dict, List, Set, Tuple

from .incidents import CORRELATION_PREFIX

OUTBOX_FILE = "outbox.sqlite3"  # the anomaly function's, in the same stateDir
CLOSED_STATES = ("6", "7", "8")  # resolved, closed, canceled
MAX_AGE = 30 * 24 * 3600.0  # a start further back is a clock that was not set


def open_episodes(state_dir: str, episode_prefix: str, now: float) -> Dict[str, Dict[str, Any]]:
    """metric → a saved episode (as :meth:`agent.judge.Judge.snapshot` writes one, without
    ``peak``) for each episode of ``episode_prefix`` (``device:``) the outbox holds open;
    the newest per metric. ``now``: the wall time, to estimate an episode's age."""
    path = os.path.join(state_dir, OUTBOX_FILE)
    if not os.path.exists(path):
        return {}
    keys, incidents = _read(path)
    seen: Dict[str, Tuple[int, Set[str]]] = {}
    for key in keys:
        corr, _, rest = key.rpartition("#")
        number, _, event = rest.partition(":")
        if not number.isdigit():
            continue
        top, events = seen.get(corr, (0, set()))
        events.add(event)
        seen[corr] = (max(top, int(number)), events)
    for corr, state in incidents:  # delivered keys are pruned after a week; incidents stay
        if state not in CLOSED_STATES:
            seen.setdefault(corr, (0, {"breach"}))
    found: Dict[str, Dict[str, Any]] = {}
    for corr, (seq, events) in seen.items():
        if "breach" not in events or "recovered" in events:
            continue
        if not corr.startswith(CORRELATION_PREFIX + episode_prefix):
            continue
        episode_id = corr[len(CORRELATION_PREFIX) :]
        parts = episode_id[len(episode_prefix) :].split(":")
        if len(parts) != 3 or parts[1] not in ("upper", "lower"):
            continue
        metric, bound, start = parts
        try:
            started_at = float(start.split("-")[0])
        except ValueError:
            continue
        age = now - started_at if 0.0 <= now - started_at < MAX_AGE else 0.0
        if metric in found and found[metric]["started_at"] >= started_at:
            continue
        found[metric] = {
            "episode_id": episode_id,
            "bound": bound,
            "seq": seq,
            "started_at": started_at,
            "last_notified": now,
            "saved_at": now,
            "age": age,
            "since_notified": 0.0,
        }
    return found


def _read(path: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    uri = "file:{}?mode=ro".format(path.replace("?", "%3f").replace("#", "%23"))
    db = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        keys = [
            row[0]
            for table in ("pending", "delivered", "dead_letter")
            for row in db.execute("SELECT key FROM {}".format(table))
        ]
        incidents = [
            (r[0], r[1]) for r in db.execute("SELECT correlation_id, state FROM incidents")
        ]
    finally:
        db.close()
    return keys, incidents
