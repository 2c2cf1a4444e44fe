"""A deployed function in a process of its own, run as its Greengrass runtime runs it.

For the memory tests: the parent starts this (directly, or inside a Sense HAT world),
waits for the work it expects (a reading published, an incident opened), reads the
process's peak RSS (:func:`peak_rss_kb`) and kills it.

* ``v1``: what a V1 core's Python runtime does for a pinned function: import its module
  (the work starts at load, outside the handler), then call ``function_handler`` with
  each of ``events`` and the subject it came on, and keep the process.
* ``v2``: what the nucleus's ``Run`` step does: ``python3 -m <module>``.

The spec is JSON in ``EDGE_AGENT_TEST_FUNCTION``: ``{"module", "runtime", "events",
"subject", "path"}`` (``path``: folders put first on ``sys.path``, as the runtime's own
modules are for a V1 function). Python 3.8 and up, standard library only.
"""

import importlib
import json
import os
import runpy
import sys
import threading

SPEC = "EDGE_AGENT_TEST_FUNCTION"


class _ClientContext:
    def __init__(self, subject):
        self.custom = {"subject": subject}


class _Context:
    """What a V1 core passes a subscription-triggered handler (facts: the subject in
    ``context.client_context.custom['subject']``)."""

    def __init__(self, subject):
        self.client_context = _ClientContext(subject)
        self.function_name = "edge-agent"


def run(spec):
    """Run the function of ``spec``; returns only if the function itself ends."""
    sys.path[:0] = spec.get("path") or []
    if spec.get("runtime") == "v2":
        sys.argv = [spec["module"]]
        runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)
        return
    module = importlib.import_module(spec["module"])
    for event in spec.get("events") or []:
        module.function_handler(event, _Context(spec.get("subject", "")))
    threading.Event().wait()  # a pinned function's container lives on


def peak_rss_kb(pid):
    """The largest peak RSS (``VmHWM``) of process ``pid`` and its descendants, in KB: a
    function run through wrappers (``sh -c``, ``unshare``, ``chroot``) is the biggest."""
    peak = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open("/proc/{}/status".format(current)) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            for task in os.listdir("/proc/{}/task".format(current)):
                with open("/proc/{}/task/{}/children".format(current, task)) as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return peak


if __name__ == "__main__":
    run(json.loads(os.environ[SPEC]))
