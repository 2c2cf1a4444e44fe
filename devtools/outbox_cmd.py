"""``edge-agent outbox``: the anomaly function's outbox, and whether queued actions were lost."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from agent.config import DEFAULT_STATE_DIR
from agent.servicenow.outbox_guard import OUTBOX_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent outbox``."""
    parser.description = (
        "Show the anomaly function's outbox (JSON on stdout) and any sign that queued "
        "ServiceNow actions were lost (on stderr): an outbox that is missing, damaged or behind "
        "its marker, or one the agent moved aside into DIR/outbox.broken-<time>/. Without "
        "--requeue-dead or --acknowledge it only reads, so it is safe while the agent runs "
        "(--check needs it stopped)."
    )
    parser.epilog = (
        "exit status: 0 the outbox is healthy; 1 --check while the anomaly function runs; "
        "2 there is no outbox in DIR (none was "
        "ever made there); 3 actions may have been lost: check ServiceNow for the episodes of "
        "that time, then run again with --acknowledge (the moved-aside files stay)."
    )
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"the anomaly function's stateDir (default: {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--requeue-dead",
        action="store_true",
        help="put every dead-lettered action back in the queue",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also read the write-ahead log (the outbox's, and the copies the agent kept) for "
        "committed transactions after a damaged frame, which SQLite skips silently; only with "
        "the anomaly function stopped, before it starts again",
    )
    parser.add_argument(
        "--acknowledge",
        action="store_true",
        help="mark the reports of moved-aside outboxes as seen, so they no longer count for exit "
        "status 3; deletes nothing",
    )


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Inspect the outbox read-only (safe beside a running agent); exit 0, 2 or 3 (see --help)."""
    import time

    from agent.servicenow.outbox import Outbox
    from agent.servicenow.outbox_inspect import acknowledge, inspect

    if args.acknowledge:
        count = acknowledge(args.state_dir)
        print("edge-agent outbox: acknowledged {} reports".format(count), file=sys.stderr)
    report = inspect(args.state_dir)
    if report["status"] == "absent":
        print("edge-agent outbox: no outbox at {}".format(report["outbox"]), file=sys.stderr)
        return 2
    if args.check and not _check_wal(report):
        return 1
    if args.requeue_dead:
        if "counts" not in report:
            print("edge-agent outbox: cannot requeue: the outbox is unreadable", file=sys.stderr)
            return 3
        outbox = Outbox(report["outbox"])
        try:
            count = outbox.requeue_dead_letters(time.time())
        finally:
            outbox.close()
        print("requeued {} dead-lettered actions".format(count), file=sys.stderr)
        checked = report.get("wal")
        report = inspect(args.state_dir)
        if checked is not None:
            _check_wal(report)
    print(json.dumps(report, indent=2, default=str))
    if report["status"] == "ok":
        return 0
    for problem in report["problems"]:
        print("edge-agent outbox: ACTIONS MAY BE LOST: {}".format(problem), file=sys.stderr)
    print(
        "edge-agent outbox: check ServiceNow for the episodes of that time, then run "
        "`edge-agent outbox --state-dir {} --acknowledge`".format(args.state_dir),
        file=sys.stderr,
    )
    return 3


def _check_wal(report: Dict[str, Any]) -> bool:
    """``--check``: add what the write-ahead logs hide to ``report``; False if it cannot run."""
    from devtools.outbox_wal import describe, lost_commits

    if report["running"]:
        print(
            "edge-agent outbox: --check reads the write-ahead log, which a running anomaly "
            "function changes under it (PID {}); stop the function first".format(
                report["running"].get("pid", "?")
            ),
            file=sys.stderr,
        )
        return False
    report["wal"] = found = {}
    lost = lost_commits(report["outbox"]) if os.path.exists(report["outbox"]) else 0
    found[report["outbox"]] = lost
    if lost:
        report["problems"].append("outbox {}: {}".format(report["outbox"], describe(lost)))
        report["status"] = "loss"
    for record in report["reports"]:  # what the agent kept when it found the loss
        kept = os.path.join(record["folder"], OUTBOX_FILE)
        if os.path.exists(kept + "-wal"):
            found[kept] = lost_commits(kept)
            if found[kept]:
                print(
                    "edge-agent outbox: the copy kept in {}: {}".format(
                        record["folder"], describe(found[kept])
                    ),
                    file=sys.stderr,
                )
    return True
