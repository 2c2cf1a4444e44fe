"""The wheels a V2 component installs on the device, per architecture, resolved at plan time.

A component's ``Install`` step runs ``pip install --no-index --find-links`` against a
zip of wheels that travels with the component as an artifact, so a Pi with no route to
PyPI (factory and OT networks) installs exactly what was planned and reviewed. The
wheels are chosen here, on the operator's machine, with ``pip download
--only-binary=:all: --platform ... --python-version X.Y --implementation cp --abi cpXY``
for each architecture the recipe has a manifest for:

* ``aarch64``: 64-bit Raspberry Pi OS (the default for Pi 3, 4, 5 and Zero 2 W);
* ``amd64``: an x86_64 Debian box as a core (and this project's own install tests);
* ``armv7l``: 32-bit Raspberry Pi OS. PyPI has no armv7l wheel of ``awscrt``, so
  without one given in ``--wheelhouse DIR`` (built on a Pi: ``pip wheel awscrt``) that
  manifest's ``Install`` stops with one line naming the cause and the remedy.

``--wheelhouse DIR`` adds a directory of wheels to PyPI for an architecture (the armv7l
wheel you built), or, with ``--no-index``-style offline planning, replaces it:
:func:`resolve_wheels` takes ``offline=True``. Resolutions are cached like the vendored
dependencies (``deploy.vendoring.cache_root()``), so a later plan needs no network.

Platform tags follow PEP 600: a wheel tagged ``manylinux_2_X_<arch>`` runs on glibc
2.X and newer; the device's glibc comes from its Python (Debian 11 "Bullseye" 2.31 with
Python 3.9, Debian 12 "Bookworm" 2.36 with 3.11, Debian 13 "Trixie" 2.41 with 3.13).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError
from .vendoring import cache_root, run_pip

# Device architecture -> (Greengrass's manifest "architecture", the wheels' machine name).
ARCHITECTURES: Dict[str, Tuple[str, str]] = {
    "aarch64": ("aarch64", "aarch64"),
    "amd64": ("amd64", "x86_64"),
    "armv7l": ("arm", "armv7l"),
}
DEFAULT_ARCHITECTURES = ("aarch64", "amd64", "armv7l")
# The architectures PyPI has every wheel for; for the others a missing wheel is expected.
PYPI_COMPLETE = ("aarch64", "amd64")
# The glibc of the Debian release that ships each Python (Raspberry Pi OS follows Debian).
GLIBC_OF_PYTHON = {"3.9": (2, 31), "3.11": (2, 36), "3.13": (2, 41)}
OLDEST_GLIBC = (2, 31)
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass
class WheelSet:
    """The wheels one architecture needs, resolved for one Python."""

    architecture: str  # aarch64, amd64, armv7l
    python: str  # "3.11"
    directory: Optional[Path]  # the resolved wheels; None when none could be found
    pins: List[str] = field(default_factory=list)  # name==version, one per wheel
    missing: str = ""  # why there are none (armv7l without a wheelhouse)

    @property
    def greengrass_architecture(self) -> str:
        return ARCHITECTURES[self.architecture][0]

    @property
    def wheels(self) -> List[Path]:
        if self.directory is None:
            return []
        return sorted(self.directory.glob("*.whl"))


def platform_tags(architecture: str, python: str) -> List[str]:
    """pip ``--platform`` values for a device: every manylinux its glibc runs, newest first."""
    if architecture not in ARCHITECTURES:
        raise DeployError(
            "unknown device architecture {!r}; known: {}".format(
                architecture, ", ".join(ARCHITECTURES)
            )
        )
    machine = ARCHITECTURES[architecture][1]
    major, newest = GLIBC_OF_PYTHON.get(python, OLDEST_GLIBC)
    tags = ["manylinux_{}_{}_{}".format(major, minor, machine) for minor in range(newest, 16, -1)]
    tags.append("manylinux2014_" + machine)
    if machine == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    tags.append("linux_" + machine)  # a wheel built on the device itself (pip wheel)
    return tags


def pins_of(directory: Path) -> List[str]:
    """``name==version`` for every wheel in ``directory`` (from the file names, PEP 427)."""
    pins = []
    for wheel in sorted(directory.glob("*.whl")):
        match = _WHEEL_NAME.match(wheel.name)
        if not match:
            raise DeployError("{} is not a wheel file name".format(wheel.name))
        pins.append("{}=={}".format(match.group("name").replace("_", "-"), match.group("version")))
    return pins


def _listing(wheelhouse: Optional[Path]) -> List[Tuple[str, int]]:
    if wheelhouse is None:
        return []
    return sorted((p.name, p.stat().st_size) for p in Path(wheelhouse).glob("*.whl"))


def _pip_download(
    requirements: Sequence[str],
    architecture: str,
    python: str,
    destination: Path,
    wheelhouse: Optional[Path],
    offline: bool,
) -> List[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--dest",
        str(destination),
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        "cp" + python.replace(".", ""),
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--quiet",
    ]
    for tag in platform_tags(architecture, python):
        command += ["--platform", tag]
    if offline:
        command.append("--no-index")
    if wheelhouse is not None:
        command += ["--find-links", str(wheelhouse)]
    return command + list(requirements)


def resolve_wheels(
    requirements: Sequence[str],
    architecture: str,
    python: str,
    *,
    wheelhouse: Optional[Path] = None,
    offline: bool = False,
    cache: Optional[Path] = None,
    refresh: bool = False,
    out: Callable[[str], None] = lambda _text: None,
) -> WheelSet:
    """The wheels ``requirements`` need on ``architecture`` with CPython ``python``.

    Cached per (architecture, Python, requirements, wheelhouse listing). An architecture
    PyPI lacks wheels for gets a :class:`WheelSet` with ``missing`` set instead of an
    error; for aarch64 and amd64 a failure is a :class:`DeployError`.
    """

    requirements = sorted(dict.fromkeys(requirements))
    if wheelhouse is not None and not Path(wheelhouse).is_dir():
        raise DeployError("--wheelhouse {} is not a directory".format(wheelhouse))
    if not requirements:
        return WheelSet(architecture, python, None)
    if architecture not in PYPI_COMPLETE and wheelhouse is None:
        return WheelSet(architecture, python, None, missing=no_wheel_reason(architecture))
    key = hashlib.sha256(
        json.dumps(
            {
                "architecture": architecture,
                "python": python,
                "requirements": requirements,
                "offline": offline,
                "wheelhouse": [str(wheelhouse), _listing(wheelhouse)] if wheelhouse else None,
            }
        ).encode("utf-8")
    ).hexdigest()[:16]
    root = Path(cache or cache_root()) / "wheels"
    final = root / "py{}-{}-{}".format(python, architecture, key)
    if (final / ".complete").is_file() and not refresh:
        return WheelSet(architecture, python, final, pins_of(final))
    staging = root / "tmp-{}".format(uuid.uuid4().hex)
    staging.mkdir(parents=True)
    out(
        "downloading wheels for {} on {} (Python {}){}".format(
            ", ".join(requirements),
            architecture,
            python,
            " from {}".format(wheelhouse) if offline else "",
        )
    )
    command = _pip_download(requirements, architecture, python, staging, wheelhouse, offline)
    done = run_pip(
        command,
        staging,
        "pip could not download wheels for {}".format(architecture),
        _hint(root),
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        reasons = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        reason = (reasons or done.stderr.strip().splitlines() or ["pip failed"])[-1]
        if architecture not in PYPI_COMPLETE and "No matching distribution" in done.stderr:
            return WheelSet(
                architecture, python, None, missing=no_wheel_reason(architecture, reason)
            )
        raise DeployError(
            "no wheels for {} on {} with Python {}: {}".format(
                ", ".join(requirements), architecture, python, reason
            ),
            hint=_hint(root),
        )
    (staging / "requirements.txt").write_text("\n".join(pins_of(staging)) + "\n")
    (staging / ".complete").write_text(" ".join(command[3:]) + "\n")
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError:  # another run finished first
        shutil.rmtree(staging, ignore_errors=True)
    return WheelSet(architecture, python, final, pins_of(final))


def no_wheel_reason(architecture: str, detail: str = "") -> str:
    """Why an architecture has no wheels (what the recipe's Install then says)."""
    if architecture == "armv7l":
        text = "PyPI has no armv7l (32-bit Raspberry Pi OS) wheel of awscrt"
    else:
        text = "no {} wheels were found".format(architecture)
    return text + (" ({})".format(detail) if detail else "")


def _hint(cache: Path) -> str:
    return (
        "pip needs PyPI the first time (later runs use the cache in {}); or give the wheels "
        "in a directory: --wheelhouse DIR".format(cache)
    )


# --- the artifact ------------------------------------------------------------------


FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class WheelArtifact:
    """One zip of wheels for one component and architecture, as the recipe names it."""

    architecture: str
    path: Path
    sha256: str
    size: int
    pins: List[str]

    @property
    def folder(self) -> str:
        """Where the nucleus unpacks it under ``{artifacts:decompressedPath}``."""
        return self.path.name[: -len(".zip")]


def wheels_zip(wheels: WheelSet, path: Path) -> WheelArtifact:
    """The wheels and a ``requirements.txt`` of their pins, in a reproducible zip (stored:
    wheels are compressed already)."""
    entries: Dict[str, bytes] = {w.name: w.read_bytes() for w in wheels.wheels}
    entries["requirements.txt"] = ("\n".join(wheels.pins) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.create_system = 3
            info.external_attr = (0o100000 | 0o644) << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, entries[name])
    os.replace(tmp, path)
    data = path.read_bytes()
    return WheelArtifact(
        architecture=wheels.architecture,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        pins=list(wheels.pins),
    )
