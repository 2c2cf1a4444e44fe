"""A real anomaly-function process driven line by line on stdin, for the durability tests.

Run as ``python tests/anomaly_worker.py SNOW_URL STATE_DIR SECRET.json [options]``. It builds
the function through its entry module (outbox guard, lock and all), starts the delivery
worker thread, prints ``READY <pid>`` and then reads commands, one per line:

* a JSON object: an anomaly message, handed to the function's handler;
* ``health`` / ``summary``: prints ``HEALTH {...}`` / ``SUMMARY {...}``;
* ``drain SECONDS``: waits until nothing is pending or held; prints ``DRAINED`` or ``NOT-DRAINED``;
* ``fsize BYTES``: sets this process's RLIMIT_FSIZE (no file may grow past BYTES);
* ``raise-fsize``: lifts it back to its hard limit (space returns);
* ``rss``: prints ``RSS <kB>``, this process's peak resident set size so far (``ru_maxrss``);
* ``quit``: stops the worker, closes the outbox, exits 0.

``--fsize BYTES`` sets RLIMIT_FSIZE once started; ``--uid N`` drops to that user before the
function touches its state directory (the interpreter lives where other users cannot exec it);
``--set NAME=VALUE`` (repeatable) sets or overrides a function variable.
A start failure prints ``START-FAILED <message>`` and exits 2, as a function on a core would.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.errors import AgentError  # noqa: E402
from agent.greengrass.local import LocalCore  # noqa: E402
from functions import anomaly_function  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("snow_url")
    parser.add_argument("state_dir")
    parser.add_argument("secret")
    parser.add_argument("--fsize", type=int)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    core = LocalCore()
    core.load_secret_file("greengrass-snow-creds", args.secret)
    if args.uid is not None:
        # This interpreter's library lives where that user may not read: import what the
        # agent imports lazily first.
        import fcntl  # noqa: F401
        import pwd  # noqa: F401
        import socket  # noqa: F401
        import tempfile  # noqa: F401

        os.setuid(args.uid)
    if args.fsize is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, hard))
    environ = {
        "snowUrl": args.snow_url,
        "stateDir": args.state_dir,
        "retryBaseSeconds": "0.05",
        "retryMaxSeconds": "0.5",
        "snowTimeout": "5",
        "updateMinutes": "0",
    }
    environ.update(item.split("=", 1) for item in args.set)
    try:
        service = anomaly_function.create_app(environ=environ, runtime=core.runtime_for("anomaly"))
    except (AgentError, OSError) as exc:
        print("START-FAILED {}".format(exc), flush=True)
        return 2
    service.start()
    print("READY {}".format(os.getpid()), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command.startswith("{"):
            service.handle(json.loads(command), "IoTBlog/anomaly")
        elif command == "health":
            print("HEALTH " + json.dumps(service.health()), flush=True)
        elif command == "summary":
            print("SUMMARY " + json.dumps(service.summary()), flush=True)
        elif command.startswith("drain"):
            deadline = time.monotonic() + float(command.split()[1])
            while service.next_attempt_at() is not None and time.monotonic() < deadline:
                service.wake()
                time.sleep(0.1)
            drained = service.next_attempt_at() is None
            print("DRAINED" if drained else "NOT-DRAINED", flush=True)
        elif command.startswith("fsize "):
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(command.split()[1]), hard))
            print("LIMITED", flush=True)
        elif command == "raise-fsize":
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
            service.wake()
            print("RAISED", flush=True)
        elif command == "rss":
            print("RSS {}".format(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), flush=True)
        elif command == "quit":
            break
    service.stop()
    service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
