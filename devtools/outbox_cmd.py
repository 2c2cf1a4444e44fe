"""``edge-agent outbox``: the anomaly function's outbox, and whether queued actions were lost."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from agent.config import DEFAULT_STATE_DIR
from agent.servicenow.outbox_guard import OUTBOX_FILE


class _Default(str):
    """The default ``--state-dir``, told apart from the same path given on the command line."""


def _given(state_dir: str) -> bool:
    return not isinstance(state_dir, _Default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent outbox``."""
    parser.description = (
        "Show the anomaly function's outbox (JSON on stdout) and any sign that queued "
        "ServiceNow actions were lost (on stderr): an outbox that is missing, damaged or behind "
        "its marker, or one the agent moved aside into DIR/outbox.broken-<time>/. Without "
        "--requeue-dead or --acknowledge it only reads, so it is safe while the agent runs "
        "(--check needs it stopped)."
    )
    from agent.standalone.exit_codes import OUTBOX_EXIT_CODES

    parser.epilog = "exit status: " + "; ".join(
        "{} {}".format(e.code, e.meaning.replace("`", "")) for e in OUTBOX_EXIT_CODES
    )
    parser.add_argument(
        "--state-dir",
        default=_Default(DEFAULT_STATE_DIR),
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
    """Inspect the outbox read-only (safe beside a running agent); the exit status is the
    status's (``agent.standalone.exit_codes.OUTBOX_EXIT_CODES``)."""
    import time

    from agent.servicenow.outbox import Outbox
    from agent.servicenow.outbox_inspect import acknowledge, inspect
    from agent.standalone.exit_codes import (
        OUTBOX_ABSENT,
        OUTBOX_CHECK_REFUSED,
        OUTBOX_LOSS,
        OUTBOX_STATUS_CODES,
    )

    if args.acknowledge:
        count = acknowledge(args.state_dir)
        print("edge-agent outbox: acknowledged {} reports".format(count), file=sys.stderr)
    report = inspect(args.state_dir)
    if report["status"] == "absent":
        print("edge-agent outbox: no outbox at {}".format(report["outbox"]), file=sys.stderr)
        if not _given(args.state_dir):
            print(
                "edge-agent outbox: that is the default folder; name the agent's with "
                "--state-dir DIR (its stateDir: the [run] state-dir of edge-agent run --config, "
                "or the --state-dir a run or simulate was given)",
                file=sys.stderr,
            )
        return OUTBOX_ABSENT
    if args.check and not _check_wal(report):
        return OUTBOX_CHECK_REFUSED
    if args.requeue_dead:
        if "counts" not in report:
            print("edge-agent outbox: cannot requeue: the outbox is unreadable", file=sys.stderr)
            return OUTBOX_LOSS
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
    if report["status"] != "loss":
        _say_status(report, args.state_dir)
        return OUTBOX_STATUS_CODES[report["status"]]
    for problem in report["problems"]:
        print("edge-agent outbox: ACTIONS MAY BE LOST: {}".format(problem), file=sys.stderr)
    print(
        "edge-agent outbox: check ServiceNow for the episodes of that time, then run "
        "`edge-agent outbox --state-dir {} --acknowledge`".format(args.state_dir),
        file=sys.stderr,
    )
    return OUTBOX_LOSS


def _say_status(report: Dict[str, Any], state_dir: str) -> None:
    """One line on stderr for what is not delivered yet (nothing when all was)."""
    counts = report.get("counts") or {}
    dead, pending = counts.get("dead_letter", 0), counts.get("pending", 0)
    if dead:
        print(
            "edge-agent outbox: {} dead-lettered (ServiceNow refused them for good); fix the "
            "cause, then `edge-agent outbox --state-dir {} --requeue-dead`".format(
                _actions(dead), state_dir
            ),
            file=sys.stderr,
        )
    if pending:
        print(
            "edge-agent outbox: {} pending: the anomaly function delivers them when it runs "
            "with this state folder".format(_actions(pending)),
            file=sys.stderr,
        )


def _actions(n: int) -> str:
    return "1 action" if n == 1 else "{} actions".format(n)


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
