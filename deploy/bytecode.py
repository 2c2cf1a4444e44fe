"""Bytecode shipped with the function: ``.pyc`` compiled by the Python that will run it.

A V1 core unpacks a Lambda zip into a folder its functions' user cannot write, and a V2
component's artifacts are read-only too, so a device never caches bytecode: without
``.pyc`` in the package every start compiles every module it imports (45-64 ms of a
sensor function's start, measured). Each ``.py`` of the package is compiled here by an
interpreter of the device's version (its magic number and cache tag), with
``unchecked-hash`` invalidation (PEP 552): the loader uses the ``.pyc`` without comparing
it to the source's mtime, which a zip fixes at 1980 anyway, and the same source gives the
same bytes, so packages stay reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

# Run by the device's interpreter: compile each file, print where each .pyc belongs.
_COMPILE = r"""
import importlib.util, json, py_compile, sys
jobs = json.load(sys.stdin)
done, failed = {}, {}
for arcname, source, target in jobs:
    try:
        py_compile.compile(source, cfile=target, dfile=arcname, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError as error:
        failed[arcname] = str(error).strip().splitlines()[-1]
        continue
    done[arcname] = importlib.util.cache_from_source(arcname)
json.dump({"done": done, "failed": failed, "tag": sys.implementation.cache_tag}, sys.stdout)
"""


def compile_for(python: str, sources: Mapping[str, bytes]) -> Tuple[Dict[str, bytes], List[str]]:
    """``.pyc`` entries for each ``.py`` of ``sources``, compiled by ``python``.

    Returns (arcname of each ``.pyc`` → its bytes, warnings for files that do not compile
    on that Python; those ship as source only, and their import fails on the device as
    it would have anyway).
    """
    with tempfile.TemporaryDirectory(prefix="edge-agent-pyc-") as work:
        jobs = []
        for index, (arcname, data) in enumerate(sorted(sources.items())):
            if not arcname.endswith(".py"):
                continue
            source = Path(work) / "src" / str(index) / Path(arcname).name
            source.parent.mkdir(parents=True)
            source.write_bytes(data)
            jobs.append([arcname, str(source), str(Path(work) / "pyc" / (str(index) + ".pyc"))])
        if not jobs:
            return {}, []
        # Not -I: it would ignore PYTHONHASHSEED, and a fixed seed fixes the order of
        # frozenset constants (``x in {...}``), so the same source gives the same bytes.
        done = subprocess.run(
            [python, "-s", "-S", "-c", _COMPILE],
            input=json.dumps(jobs),
            env={"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                "{} could not compile the package: {}".format(
                    python, (done.stderr.strip().splitlines() or ["no output"])[-1]
                )
            )
        report = json.loads(done.stdout)
        compiled: Dict[str, bytes] = {}
        for arcname, _source, target in jobs:
            if arcname in report["done"]:
                compiled[report["done"][arcname]] = Path(target).read_bytes()
        warnings = [
            "{} does not compile on {} ({}); shipped as source only".format(
                arcname, report["tag"], reason
            )
            for arcname, reason in sorted(report["failed"].items())
        ]
        return compiled, warnings
