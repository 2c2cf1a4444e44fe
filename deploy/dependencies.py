"""Which distributions a function needs on the device, and which of their files to vendor.

The roots are the function's ``device_extras`` (read from ``pyproject.toml``);
their dependency closure is walked through the installed metadata of one
site-packages directory (``RECORD`` lists the files). Markers and
``Requires-Python`` are evaluated for the *device's* Python, not this one.

Rules:

* never boto3/botocore/s3transfer/jmespath (cloud SDK, not needed on a core);
* extras the OS provides are not vendored: ``pi`` (sense-hat and RTIMU come
  from Raspberry Pi OS, ``apt install python3-sense-hat``);
* compiled extension modules (``.so``) are never copied: they are built for
  the packaging machine, not for an ARM Pi. ``cbor2`` and ``charset-normalizer``
  ship a pure-Python implementation next to their optional accelerator, so
  their Python files are vendored without it; a distribution with other
  compiled code is left out together with what needs it, for pip on the device;
* a distribution whose ``Requires-Python`` excludes the device's Python is
  reported (an error unless ``--allow-warnings``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from agent.topology import FunctionSpec

from .errors import DeployError
from .naming import TARGET_PYTHON

NEVER_VENDOR = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
OS_PROVIDED_EXTRAS = {
    "pi": "sense-hat/RTIMU come from Raspberry Pi OS (apt install python3-sense-hat)",
    "emulator": "sense-emu is a desktop tool, not deployed",
}
# Distributions whose compiled module is an optional accelerator next to a
# complete pure-Python implementation.
PURE_PYTHON_FALLBACK = {
    "cbor2": "pure-Python cbor2 (the _cbor2 C accelerator is optional)",
    "charset-normalizer": "pure-Python charset_normalizer (the mypyc .so files are optional)",
}
EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# The V1 and V2 runtimes differ in one extra: the SDK the shim imports.
RUNTIME_EXTRA = {"v1": "greengrass-v1", "v2": "greengrass-v2"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- requirements -------------------------------------------------------------


_NAME_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _split_requirement(text: str) -> Tuple[str, str, str]:
    """(name, version specifier, marker) of a PEP 508 string (no URLs)."""
    requirement, _, marker = text.partition(";")
    match = _NAME_RE.match(requirement)
    if not match:
        raise DeployError("cannot parse requirement {!r}".format(text))
    spec = match.group(3).strip().strip("()").strip()
    return match.group(1), spec, marker.strip()


def _marker_applies(marker: str, target_python: str) -> bool:
    """Whether a dependency marker holds on the device (Linux, CPython ``target_python``)."""
    if not marker:
        return True
    if "extra" in marker:
        return False  # we never ask for a dependency's own extras
    try:
        from packaging.markers import Marker  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - packaging is nearly always there
        return True
    environment = {
        "python_version": target_python,
        "python_full_version": target_python + ".0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "armv7l",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    try:
        return bool(Marker(marker).evaluate(environment))
    except Exception:  # an unusual marker: include rather than drop silently
        return True


def _load_pyproject(source_root: Path) -> Dict[str, object]:
    path = source_root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ImportError:
            return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def project_requirements(source_root: Path) -> Tuple[List[str], Dict[str, List[str]]]:
    """(base dependencies, {extra: dependencies}) of the project."""
    data = _load_pyproject(source_root)
    project = data.get("project") if isinstance(data.get("project"), dict) else None
    if project:
        base = list(project.get("dependencies", []))  # type: ignore[union-attr]
        extras = dict(project.get("optional-dependencies", {}))  # type: ignore[union-attr]
        return base, {k: list(v) for k, v in extras.items()}
    try:  # installed, not a checkout: the distribution metadata says the same
        requires = metadata.requires("edge-agent") or []
    except metadata.PackageNotFoundError:
        raise DeployError(
            "cannot find the project's dependencies: no pyproject.toml under {} and "
            "edge-agent is not installed".format(source_root)
        )
    base, extras = [], {}  # type: ignore[var-annotated]
    for text in requires:
        _name, _spec, marker = _split_requirement(text)
        match = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if match:
            extras.setdefault(match.group(1), []).append(text.split(";")[0].strip())
        else:
            base.append(text)
    return base, extras


def function_extras(spec: FunctionSpec, runtime: str) -> List[str]:
    """The function's device extras for a runtime: V2 swaps the Greengrass SDK extra."""
    extras = []
    for extra in spec.device_extras:
        if extra in RUNTIME_EXTRA.values():
            extra = RUNTIME_EXTRA[runtime]
        if extra not in extras:
            extras.append(extra)
    return extras


# --- Requires-Python ------------------------------------------------------------


def _version_tuple(text: str) -> Tuple[int, ...]:
    numbers = [int(n) for n in re.findall(r"\d+", text.split("+")[0])]
    return tuple(numbers)


def python_satisfies(requires_python: str, target: str) -> bool:
    """Whether a ``Requires-Python`` specifier admits Python ``target`` (e.g. "3.8")."""
    version = _version_tuple(target) + (0,) * 3
    version = version[:3]
    for clause in filter(None, (c.strip() for c in requires_python.split(","))):
        match = re.match(r"(~=|===|==|!=|<=|>=|<|>)\s*(.+)$", clause)
        if not match:
            continue
        op, value = match.group(1), match.group(2).strip()
        wildcard = value.endswith(".*")
        wanted = _version_tuple(value.rstrip(".*"))
        if op in ("==", "===", "!=") and wildcard:
            equal = version[: len(wanted)] == wanted
            ok = equal if op != "!=" else not equal
        else:
            padded = (wanted + (0,) * 3)[:3]
            if op == "~=":
                prefix = wanted[:-1]
                ok = version >= padded and version[: len(prefix)] == prefix
            elif op in ("==", "==="):
                ok = version == padded
            elif op == "!=":
                ok = version != padded
            elif op == ">=":
                ok = version >= padded
            elif op == ">":
                ok = version > padded
            elif op == "<=":
                ok = version <= padded
            else:
                ok = version < padded
        if not ok:
            return False
    return True


# --- distributions ---------------------------------------------------------------


class SitePackages:
    """The distributions installed in one site-packages directory (e.g. ``pip install --target``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._by_name: Dict[str, metadata.Distribution] = {}
        for dist in metadata.distributions(path=[str(self.directory)]):
            name = dist.metadata.get("Name") if dist.metadata else None
            if name and normalize(name) not in self._by_name:
                self._by_name[normalize(name)] = dist

    def get(self, name: str) -> Optional[metadata.Distribution]:
        return self._by_name.get(normalize(name))


def _dist_files(dist: metadata.Distribution) -> List[Tuple[str, Path]]:
    """(archive name, file on disk) for a distribution's importable files."""
    files = []
    for entry in dist.files or []:
        parts = entry.parts
        if not parts or parts[0] in ("..", "") or parts[0].startswith("/"):
            continue  # console scripts and files outside site-packages
        if parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        if any(part in EXCLUDED_DIRS for part in parts) or entry.name.endswith(EXCLUDED_SUFFIXES):
            continue
        files.append(("/".join(parts), Path(str(dist.locate_file(entry)))))
    return files


def _is_compiled(arcname: str) -> bool:
    return arcname.endswith(COMPILED_SUFFIXES) or ".so." in arcname


@dataclass
class _Resolution:
    files: Dict[str, Path] = field(default_factory=dict)
    vendored: List[Dict[str, str]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    device_requirements: List[str] = field(default_factory=list)


def resolve_dependencies(
    roots: Sequence[str],
    environment: SitePackages,
    target_python: str = TARGET_PYTHON,
    device_installs: bool = False,
) -> _Resolution:
    """Walk ``roots`` and their dependencies; collect what can be vendored.

    A distribution is vendored only when its whole dependency closure can be
    (awsiotsdk without its compiled awscrt would not import); what cannot is
    left to pip on the device and its root requirement listed for that.
    ``device_installs``: the device pip-installs what is left out (a V2
    component's ``Install`` step), so that is expected, not a warning. A V1
    Lambda zip has no such step: whatever it lacks, it lacks on the core.
    """
    result = _Resolution()
    fully: Dict[str, bool] = {}
    order: List[str] = []
    dist_files: Dict[str, List[Tuple[str, Path]]] = {}
    dist_info: Dict[str, Dict[str, str]] = {}
    blocker: Dict[str, str] = {}

    def visit(name: str, requirement: str) -> bool:
        key = normalize(name)
        if key in fully:
            return fully[key]
        fully[key] = True  # provisional, for dependency cycles
        if key in NEVER_VENDOR:
            result.skipped.append({"name": key, "reason": "cloud SDK, never vendored"})
            return True
        dist = environment.get(key)
        if dist is None:
            result.skipped.append(
                {"name": key, "reason": "not in {}".format(environment.directory)}
            )
            if not device_installs:
                result.warnings.append(
                    "{} is not in {}: the zip would lack it on the core".format(
                        requirement, environment.directory
                    )
                )
            fully[key] = False
            return False
        version = dist.metadata.get("Version", "?")
        requires_python = dist.metadata.get("Requires-Python") or ""
        if requires_python and not python_satisfies(requires_python, target_python):
            result.warnings.append(
                "{} {} requires Python {}, the device runs Python {}: it would fail there at "
                "import; let deploy resolve for Python {} (leave out --site-packages) or "
                "vendor from a directory built for it".format(
                    key, version, requires_python, target_python, target_python
                )
            )
        files = _dist_files(dist)
        compiled = [arcname for arcname, _ in files if _is_compiled(arcname)]
        ok = True
        if compiled and key not in PURE_PYTHON_FALLBACK:
            result.skipped.append(
                {
                    "name": key,
                    "reason": "compiled for this machine"
                    + ("; pip installs it on the device" if device_installs else ""),
                }
            )
            if not device_installs:
                result.warnings.append(
                    "{} {} contains compiled code for this machine, not the device: the zip "
                    "cannot carry it; install it on the core".format(key, version)
                )
            ok = False
        else:
            note = PURE_PYTHON_FALLBACK[key] if compiled else "pure Python"
            dist_files[key] = [(a, p) for a, p in files if not _is_compiled(a)]
            dist_info[key] = {"name": key, "version": version, "note": note}
            order.append(key)
        for text in dist.requires or []:
            dep_name, _spec, marker = _split_requirement(text)
            if _marker_applies(marker, target_python) and not visit(
                dep_name, text.split(";")[0].strip()
            ):
                blocker.setdefault(key, normalize(dep_name))
                ok = False
        fully[key] = ok
        return ok

    for requirement in roots:
        if not visit(_split_requirement(requirement)[0], requirement):
            result.device_requirements.append(requirement)
    for key in order:
        if not fully[key]:
            result.skipped.append(
                {
                    "name": key,
                    "reason": "needs {}, which cannot be vendored; {}".format(
                        blocker.get(key, "a dependency"),
                        "pip installs it on the device"
                        if device_installs
                        else "install on the core",
                    ),
                }
            )
            continue
        for arcname, path in dist_files[key]:
            if arcname in result.files and result.files[arcname] != path:
                raise DeployError("{} is provided by two distributions".format(arcname))
            result.files[arcname] = path
        result.vendored.append(dist_info[key])
    return result
