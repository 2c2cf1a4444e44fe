"""Bytecode of the project's own modules, for the processes the tests start.

With ``PYTHONDONTWRITEBYTECODE`` set (as on the shared development machines),
no interpreter writes ``.pyc`` files, so every process a test starts
(``edge-agent simulate``, ``run``, ``outbox``, the function workers) compiled
every project module it imports from source: 1-2 s of CPU each on a busy
machine, more as the code grows. :func:`compile_project` writes them once per
test session instead, as checked-hash ``.pyc`` files (PEP 552): an interpreter
uses one only while it matches the source's hash, so an edited or mutated file
(``./dev mutate`` rewrites modules between runs) is never run from stale
bytecode, whatever its modification time.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
from typing import Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "functions", "devtools", "deploy", "benchmarks", "tests")
_FLAGS_CHECKED_HASH = 0b11  # PEP 552: hash-based, checked against the source


def _sources(root: str, packages: Iterable[str]) -> Iterable[str]:
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def _up_to_date(source: str, cached: str) -> bool:
    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return (
        header[:4] == importlib.util.MAGIC_NUMBER
        and int.from_bytes(header[4:8], "little") == _FLAGS_CHECKED_HASH
        and header[8:16] == importlib.util.source_hash(data)
    )


def compile_project(root: str = ROOT) -> int:
    """Write checked-hash ``.pyc`` for the project's modules not already compiled; the count.

    Does nothing unless ``PYTHONDONTWRITEBYTECODE`` is set (otherwise the first
    process to import a module writes its ``.pyc``). A file this Python cannot
    compile (tooling code seen from Python 3.8) is left to fail where it is imported.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return 0
    written = 0
    for source in _sources(root, PACKAGES):
        cached = importlib.util.cache_from_source(source)
        if _up_to_date(source, cached):
            continue
        try:
            py_compile.compile(
                source,
                cfile=cached,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
        except (py_compile.PyCompileError, OSError):
            continue
        written += 1
    return written
