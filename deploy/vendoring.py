"""Install the functions' device dependencies as the device's Python would get them, into a cache.

A V1 Lambda runs on Python 3.8; a V2 component on the Pi's own Python. The
newest releases of requests, urllib3 and idna no longer import on 3.8
(``TypeError: 'type' object is not subscriptable``), so the versions must be
chosen *for the target*, not for the Python running this tool:

* with an interpreter of the target version (``PYTHON38``/``PYTHON311``...,
  ``$(pyenv root)/versions/3.8.*``, ``python3.8`` on PATH, or this one if it
  matches), ``<it> -m pip install --target DIR --only-binary=:all:``: pip
  evaluates ``Requires-Python`` and markers exactly as the device will;
* without one, this Python's pip with ``--python-version X.Y`` (pip then
  checks ``Requires-Python`` for X.Y, but evaluates markers for this Python;
  the dependency walk in :mod:`deploy.dependencies` reports anything a marker
  for X.Y needs that is missing).

The result is cached per target Python and requirement set (``EDGE_AGENT_CACHE``,
else ``$XDG_CACHE_HOME/edge-agent``, else ``~/.cache/edge-agent``), so later
runs need no network and pick the same versions until ``--refresh-vendor``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError

PIP_TIMEOUT_S = 900
_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
_probed: Dict[str, Optional[str]] = {}


@dataclass(frozen=True)
class Resolver:
    """How the dependencies for ``target`` (``"3.8"``) were (or will be) resolved."""

    target: str
    python: str  # the interpreter whose pip runs
    native: bool  # True: ``python`` *is* the target version

    def describe(self) -> str:
        if self.native:
            return "pip of {} (Python {})".format(self.python, self.target)
        return "pip of {} with --python-version {} (no Python {} interpreter found)".format(
            self.python, self.target, self.target
        )


def env_var_for(target: str) -> str:
    """``PYTHON38`` for ``"3.8"``, ``PYTHON311`` for ``"3.11"``."""
    return "PYTHON" + target.replace(".", "")


def _version_of(python: str) -> Optional[str]:
    if python not in _probed:
        try:
            done = subprocess.run(
                [python, "-c", _VERSION_PROBE],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            _probed[python] = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            _probed[python] = None
    return _probed[python]


def _pyenv_roots() -> List[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    return [r for r in dict.fromkeys(roots) if r and os.path.isdir(r)]


def _patch_level(path: str) -> Tuple[int, ...]:
    version = Path(path).parent.parent.name  # .../versions/3.8.18/bin/python3.8
    return tuple(int(n) for n in version.split(".") if n.isdigit())


def find_python(target: str, environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """An interpreter of Python ``target`` (``"3.8"``), or None.

    ``PYTHON38`` (for 3.8) wins and must be right: a wrong one is an error,
    not a silent fallback.
    """
    environ = os.environ if environ is None else environ
    variable = env_var_for(target)
    given = environ.get(variable, "").strip()
    if given:
        found = _version_of(given)
        if found != target:
            raise DeployError(
                "{}={} is {}, not Python {}".format(
                    variable, given, "Python " + found if found else "not a working Python", target
                ),
                hint="point {} at a Python {} interpreter, or unset it".format(variable, target),
            )
        return given
    candidates: List[str] = []
    for root in _pyenv_roots():
        pattern = os.path.join(root, "versions", target + ".*", "bin", "python" + target)
        candidates += sorted(glob.glob(pattern), key=_patch_level, reverse=True)
    on_path = shutil.which("python" + target)
    if on_path:
        candidates.append(on_path)
    candidates.append(sys.executable)
    for candidate in candidates:
        if _version_of(candidate) == target:
            return candidate
    return None


def resolver_for(target: str) -> Resolver:
    python = find_python(target)
    if python:
        return Resolver(target, python, native=True)
    return Resolver(target, sys.executable, native=False)


def cache_root(environ: Optional[Dict[str, str]] = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("EDGE_AGENT_CACHE"):
        return Path(environ["EDGE_AGENT_CACHE"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-agent"


def _pip_command(resolver: Resolver, directory: Path, requirements: Sequence[str]) -> List[str]:
    command = [
        resolver.python,
        "-m",
        "pip",
        "install",
        "--target",
        str(directory),
        "--only-binary=:all:",
        "--no-compile",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
    ]
    if not resolver.native:
        command += ["--python-version", resolver.target, "--implementation", "cp"]
    return command + list(requirements)


def vendor_directory(
    requirements: Sequence[str],
    resolver: Resolver,
    *,
    cache: Optional[Path] = None,
    refresh: bool = False,
    out: Callable[[str], None] = lambda _text: None,
) -> Path:
    """A site-packages directory holding ``requirements`` resolved for ``resolver.target``."""
    requirements = sorted(dict.fromkeys(requirements))
    key = hashlib.sha256(
        json.dumps(
            {"python": resolver.target, "native": resolver.native, "requirements": requirements}
        ).encode("utf-8")
    ).hexdigest()[:16]
    root = Path(cache or cache_root())
    final = root / "vendor" / "py{}-{}".format(resolver.target, key)
    if (final / ".complete").is_file() and not refresh:
        return final
    if not requirements:
        final.mkdir(parents=True, exist_ok=True)
        (final / ".complete").write_text("")
        return final
    staging = root / "vendor" / "tmp-{}".format(uuid.uuid4().hex)
    staging.mkdir(parents=True)
    out(
        "resolving {} for Python {} with {}".format(
            ", ".join(requirements), resolver.target, resolver.describe()
        )
    )
    done = run_pip(
        _pip_command(resolver, staging, requirements),
        staging,
        "pip could not resolve {} for Python {}".format(", ".join(requirements), resolver.target),
        _offline_hint(root),
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        reasons = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        raise DeployError(
            "pip could not resolve {} for Python {}:\n  {}".format(
                ", ".join(requirements),
                resolver.target,
                "\n  ".join(reasons[-5:] or done.stderr.strip().splitlines()[-5:]),
            ),
            hint=_offline_hint(root),
        )
    (staging / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (staging / ".complete").write_text(resolver.describe() + "\n")
    # Only a complete resolution replaces the previous one (a failed --refresh-vendor
    # keeps the last good one usable offline).
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError:  # another run finished first: use its result
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _offline_hint(cache: Path) -> str:
    return (
        "pip needs PyPI the first time (later runs use the cache in {}); or vendor from a "
        "directory you prepared for the device's Python: --site-packages DIR".format(cache)
    )


def run_pip(
    command: Sequence[str], staging: Path, failure: str, hint: str
) -> subprocess.CompletedProcess[str]:
    """Run pip without a prompt; when it cannot run or hangs past PIP_TIMEOUT_S, remove the
    half-filled ``staging`` folder and raise ``failure: cause`` (its output is the caller's)."""
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_NO_INPUT="1")
    try:
        return subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DeployError("{}: {}".format(failure, exc), hint=hint)
