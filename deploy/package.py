"""Reproducible function zips: entry module, the ``agent`` package, vendored deps.

One zip per function (``<lambda_name>.zip``; ``<lambda_name>-v2.zip`` for the
Greengrass V2 artifact) holding:

* ``functions/__init__.py`` and the function's entry module (``spec.module``);
* the whole ``agent/`` package;
* the device dependencies this function needs: the function's
  ``device_extras`` (read from ``pyproject.toml``; the base dependencies are
  for the laptop tooling, and the sensor function needs none of them), resolved through installed distributions' metadata
  and copied from the current environment (or ``--site-packages DIR``).

Rules:

* never boto3/botocore/s3transfer/jmespath (cloud SDK, not needed on a core);
* extras the OS provides are not vendored: ``pi`` (sense-hat and RTIMU come
  from Raspberry Pi OS, ``apt install python3-sense-hat``);
* compiled extension modules (``.so``) are never copied: they are built for
  this machine, not for an ARM Pi. ``cbor2`` and ``charset-normalizer`` ship a
  pure-Python implementation next to their optional accelerator, so their
  Python files are vendored without it; any other distribution with compiled
  code is skipped with a warning (install it on the device with pip);
* a distribution whose ``Requires-Python`` excludes the target runtime
  (Python 3.8 for a V1 Lambda) is reported; ``--strict`` makes that an error.

Reproducible: entries sorted, timestamps fixed at 1980-01-01 00:00, mode 0644,
no ``__pycache__``/``*.pyc``; the same inputs give byte-identical zips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from agent.topology import FunctionSpec, GroupTopology

from .errors import DeployError
from .naming import TARGET_PYTHON

LOG = logging.getLogger(__name__)
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
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

# Where this checkout keeps agent/, functions/ and pyproject.toml.
DEFAULT_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PackageResult:
    function_id: str
    path: Path
    sha256: str  # hex, of the zip file
    code_sha256: str  # base64, as Lambda reports CodeSha256
    size: int
    vendored: List[Dict[str, str]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    device_requirements: List[str] = field(default_factory=list)  # pip-install on the device

    def manifest(self) -> Dict[str, object]:
        return {
            "function": self.function_id,
            "zip": self.path.name,
            "sha256": self.sha256,
            "code_sha256": self.code_sha256,
            "size": self.size,
            "vendored": self.vendored,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "device_requirements": self.device_requirements,
        }


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


class _Environment:
    """Installed distributions, from ``sys.path`` or one site-packages directory."""

    def __init__(self, site_packages: Optional[Path] = None) -> None:
        paths = [str(site_packages)] if site_packages else sys.path
        self._by_name: Dict[str, metadata.Distribution] = {}
        for dist in metadata.distributions(path=paths):
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
    environment: _Environment,
    target_python: str = TARGET_PYTHON,
) -> _Resolution:
    """Walk ``roots`` and their dependencies; collect what can be vendored.

    A distribution is vendored only when its whole dependency closure can be
    (awsiotsdk without its compiled awscrt would not import); what cannot is
    left to pip on the device and its root requirement listed for that.
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
            result.skipped.append({"name": key, "reason": "not installed where packaging ran"})
            result.warnings.append(
                "{} is not installed in the packaging environment: not vendored; install it "
                "on the device (pip3 install '{}')".format(key, requirement)
            )
            fully[key] = False
            return False
        version = dist.metadata.get("Version", "?")
        requires_python = dist.metadata.get("Requires-Python") or ""
        if requires_python and not python_satisfies(requires_python, target_python):
            result.warnings.append(
                "{} {} requires Python {}, the device runtime is Python {}: package from a "
                "Python {} environment or pass --site-packages with compatible versions".format(
                    key, version, requires_python, target_python, target_python
                )
            )
        files = _dist_files(dist)
        compiled = [arcname for arcname, _ in files if _is_compiled(arcname)]
        ok = True
        if compiled and key not in PURE_PYTHON_FALLBACK:
            result.skipped.append(
                {"name": key, "reason": "compiled extension built for this machine"}
            )
            result.warnings.append(
                "{} {} contains compiled code for this machine, not the device: not vendored; "
                "install it on the device".format(key, version)
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
                    "reason": "needs {}, which cannot be vendored; install on the device".format(
                        blocker.get(key, "a dependency")
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


# --- sources and zip --------------------------------------------------------------


def _walk(directory: Path, arc_prefix: str) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in names:
            if name.endswith(EXCLUDED_SUFFIXES) or name.startswith("."):
                continue
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            files["{}/{}".format(arc_prefix, rel)] = path
    return files


def source_files(spec: FunctionSpec, source_root: Path) -> Dict[str, Path]:
    """The function's entry module (with its packages' ``__init__``) and ``agent/``."""
    files: Dict[str, Path] = {}
    parts = spec.module.split(".")
    for depth in range(1, len(parts)):
        init = source_root.joinpath(*parts[:depth], "__init__.py")
        if not init.is_file():
            raise DeployError(
                "{} is missing: the function module {} must be in a package".format(
                    init, spec.module
                )
            )
        files["/".join(parts[:depth]) + "/__init__.py"] = init
    module_file = source_root.joinpath(*parts[:-1], parts[-1] + ".py")
    module_dir = source_root.joinpath(*parts)
    if module_file.is_file():
        files["/".join(parts) + ".py"] = module_file
    elif (module_dir / "__init__.py").is_file():
        files.update(_walk(module_dir, "/".join(parts)))
    else:
        raise DeployError(
            "function {!r}: module {} not found under {}".format(spec.id, spec.module, source_root)
        )
    agent_dir = source_root / "agent"
    if not (agent_dir / "__init__.py").is_file():
        raise DeployError("the agent package is missing under {}".format(source_root))
    files.update(_walk(agent_dir, "agent"))
    return files


def write_reproducible_zip(entries: Mapping[str, bytes], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
            info.create_system = 3  # Unix, so external_attr holds the mode
            info.external_attr = (0o100000 | FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[arcname], compresslevel=9)
    os.replace(tmp, path)


def zip_name(spec: FunctionSpec, runtime: str = "v1") -> str:
    return "{}{}.zip".format(spec.lambda_name, "" if runtime == "v1" else "-" + runtime)


def build_function_package(
    spec: FunctionSpec,
    out_dir: Path,
    *,
    source_root: Optional[Path] = None,
    site_packages: Optional[Path] = None,
    runtime: str = "v1",
    target_python: str = TARGET_PYTHON,
    strict: bool = False,
    environment: Optional[_Environment] = None,
) -> PackageResult:
    source_root = Path(source_root or DEFAULT_SOURCE_ROOT)
    _, extras = project_requirements(source_root)
    roots: List[str] = []
    notes: List[Dict[str, str]] = []
    for extra in function_extras(spec, runtime):
        if extra in OS_PROVIDED_EXTRAS:
            notes.append({"name": "extra:" + extra, "reason": OS_PROVIDED_EXTRAS[extra]})
            continue
        if extra not in extras:
            raise DeployError(
                "function {!r} needs extra {!r}, which pyproject.toml does not define".format(
                    spec.id, extra
                )
            )
        roots.extend(extras[extra])
    environment = environment or _Environment(site_packages)
    resolution = resolve_dependencies(roots, environment, target_python)
    files = dict(resolution.files)
    for arcname, path in source_files(spec, source_root).items():
        if arcname in files:
            raise DeployError("{} is both project code and a vendored dependency".format(arcname))
        files[arcname] = path
    for arcname in files:
        if arcname.split("/")[0] in NEVER_VENDOR:  # belt and braces
            raise DeployError("refusing to package {}".format(arcname))
    if strict and resolution.warnings:
        raise DeployError(
            "packaging {} is not clean (--strict):\n  {}".format(
                spec.id, "\n  ".join(resolution.warnings)
            )
        )
    entries = {name: path.read_bytes() for name, path in files.items()}
    path = Path(out_dir) / zip_name(spec, runtime)
    write_reproducible_zip(entries, path)
    data = path.read_bytes()
    result = PackageResult(
        function_id=spec.id,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"),
        size=len(data),
        vendored=resolution.vendored,
        skipped=notes + resolution.skipped,
        warnings=resolution.warnings,
        device_requirements=resolution.device_requirements,
    )
    LOG.debug(
        "packaged %s: %d files, %d bytes, sha256 %s",
        path.name,
        len(entries),
        result.size,
        result.sha256,
    )
    manifest_path = path.with_name(path.name[: -len(".zip")] + ".manifest.json")
    manifest_path.write_text(json.dumps(result.manifest(), indent=2, sort_keys=True) + "\n")
    return result


def build_packages(
    topology: GroupTopology,
    out_dir: Path,
    *,
    function_ids: Iterable[str] = (),
    **kwargs: object,
) -> Dict[str, PackageResult]:
    wanted = list(function_ids) or [spec.id for spec in topology.functions]
    environment = _Environment(kwargs.pop("site_packages", None))  # type: ignore[arg-type]
    return {
        fid: build_function_package(
            topology.function(fid),
            out_dir,
            environment=environment,
            **kwargs,  # type: ignore[arg-type]
        )
        for fid in wanted
    }
