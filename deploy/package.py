"""Reproducible function zips: entry module, the ``agent`` package, vendored dependencies.

One zip per function (``<lambda_name>.zip``; ``<lambda_name>-v2.zip`` for the
Greengrass V2 artifact) holding:

* ``functions/__init__.py`` and the function's entry module (``spec.module``);
* the whole ``agent/`` package;
* the device dependencies this function needs (its ``device_extras`` in
  ``pyproject.toml``), resolved *for the Python that runs them*: 3.8 for a V1
  Lambda, the Pi's Python for V2 (``--device-python``). ``deploy.vendoring``
  installs them with pip for that Python into a cache; ``--site-packages DIR``
  vendors from a directory you prepared instead. ``deploy.dependencies``
  decides what of it goes into the zip.

Anything that would not work on the device (a release whose
``Requires-Python`` excludes the device's Python, a missing or compiled
dependency a V1 zip cannot carry) is an error unless ``allow_warnings``.

Each ``.py`` ships with its ``__pycache__/*.pyc``, compiled by an interpreter of the
device's Python with unchecked-hash invalidation (``deploy.bytecode``): a device
cannot write bytecode next to read-only code, so without them it compiles at every
start. No interpreter of that version here: no ``.pyc``, and the manifest says so.

Reproducible: entries sorted, timestamps fixed at 1980-01-01 00:00, mode 0644,
no ``.pyc`` but those compiled here; the same inputs give byte-identical zips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.topology import FunctionSpec, GroupTopology

from .dependencies import (
    EXCLUDED_DIRS,
    EXCLUDED_SUFFIXES,
    NEVER_VENDOR,
    OS_PROVIDED_EXTRAS,
    SitePackages,
    function_extras,
    project_requirements,
    resolve_dependencies,
)
from .errors import DeployError
from .naming import DEFAULT_DEVICE_PYTHON, TARGET_PYTHON

LOG = logging.getLogger(__name__)
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
RUNTIMES = ("v1", "v2")

# Where this checkout keeps agent/, functions/ and pyproject.toml.
DEFAULT_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PackageResult:
    function_id: str
    path: Path
    sha256: str  # hex, of the zip file
    code_sha256: str  # base64, as Lambda reports CodeSha256
    size: int
    target_python: str = TARGET_PYTHON
    resolved_with: str = ""
    vendored: List[Dict[str, str]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    device_requirements: List[str] = field(default_factory=list)  # pip-install on the device
    bytecode: str = ""  # the cache tag the .pyc were compiled for, or why there are none

    def manifest(self) -> Dict[str, object]:
        return {
            "function": self.function_id,
            "zip": self.path.name,
            "sha256": self.sha256,
            "code_sha256": self.code_sha256,
            "size": self.size,
            "target_python": self.target_python,
            "resolved_with": self.resolved_with,
            "vendored": self.vendored,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "device_requirements": self.device_requirements,
            "bytecode": self.bytecode,
        }


def target_python_for(runtime: str, device_python: str = DEFAULT_DEVICE_PYTHON) -> str:
    """The Python a function runs on: 3.8 for a V1 Lambda, the device's for a V2 component."""
    if runtime not in RUNTIMES:
        raise DeployError(
            "runtime must be one of {}, got {!r}".format(", ".join(RUNTIMES), runtime)
        )
    return TARGET_PYTHON if runtime == "v1" else device_python


def function_roots(
    spec: FunctionSpec, runtime: str, extras: Mapping[str, List[str]]
) -> Tuple[List[str], List[Dict[str, str]]]:
    """(requirements to vendor, notes on extras the OS provides) for one function."""
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
    return roots, notes


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
    environment: SitePackages,
    source_root: Optional[Path] = None,
    runtime: str = "v1",
    target_python: str = TARGET_PYTHON,
    allow_warnings: bool = False,
    resolved_with: str = "",
) -> PackageResult:
    """One function's zip, its dependencies taken from ``environment``."""
    source_root = Path(source_root or DEFAULT_SOURCE_ROOT)
    _, extras = project_requirements(source_root)
    roots, notes = function_roots(spec, runtime, extras)
    resolution = resolve_dependencies(
        roots, environment, target_python, device_installs=runtime == "v2"
    )
    files = dict(resolution.files)
    for arcname, path in source_files(spec, source_root).items():
        if arcname in files:
            raise DeployError("{} is both project code and a vendored dependency".format(arcname))
        files[arcname] = path
    for arcname in files:
        if arcname.split("/")[0] in NEVER_VENDOR:  # belt and braces
            raise DeployError("refusing to package {}".format(arcname))
    if resolution.warnings and not allow_warnings:
        raise DeployError(
            "the {} zip would not work on Python {}:\n  {}".format(
                spec.id, target_python, "\n  ".join(resolution.warnings)
            ),
            hint="fix the above, or pass --allow-warnings to package anyway",
        )
    entries = {name: path.read_bytes() for name, path in files.items()}
    bytecode, compile_notes = _add_bytecode(entries, target_python)
    path = Path(out_dir) / zip_name(spec, runtime)
    write_reproducible_zip(entries, path)
    data = path.read_bytes()
    result = PackageResult(
        function_id=spec.id,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"),
        size=len(data),
        target_python=target_python,
        resolved_with=resolved_with,
        vendored=resolution.vendored,
        skipped=notes + resolution.skipped,
        warnings=resolution.warnings + compile_notes,
        device_requirements=resolution.device_requirements,
        bytecode=bytecode,
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


def _add_bytecode(entries: Dict[str, bytes], target_python: str) -> Tuple[str, List[str]]:
    """Add each ``.py``'s ``.pyc`` for ``target_python`` to ``entries``; (cache tag, notes)."""
    from .bytecode import compile_for
    from .vendoring import env_var_for, find_python

    python = find_python(target_python)
    if python is None:
        return (
            "none: no Python {} interpreter here (set {}); the device compiles at every "
            "start".format(target_python, env_var_for(target_python)),
            [],
        )
    compiled, notes = compile_for(python, entries)
    entries.update(compiled)
    tags = {name.rsplit(".", 2)[-2] for name in compiled}
    return (", ".join(sorted(tags)) or "none: no Python source"), notes


@dataclass
class PackageOptions:
    """Where the zips go and where their dependencies come from."""

    package_dir: Path = Path("out") / "package"
    source_root: Optional[Path] = None  # checkout with agent/, functions/, pyproject.toml
    site_packages: Optional[Path] = None  # vendor from here as-is instead of resolving
    device_python: str = DEFAULT_DEVICE_PYTHON  # the Pi's Python, for V2
    allow_warnings: bool = False
    refresh_vendor: bool = False
    cache: Optional[Path] = None  # default: deploy.vendoring.cache_root()


def build_packages(
    topology: GroupTopology,
    options: PackageOptions,
    *,
    runtime: str = "v1",
    function_ids: Iterable[str] = (),
    out: Callable[[str], None] = lambda _text: None,
) -> Dict[str, PackageResult]:
    """One zip per function (all, or ``function_ids``) for ``runtime``, in ``package_dir``.

    Dependencies come from ``site_packages`` as they are, or else are resolved
    with pip for the runtime's Python (see :mod:`deploy.vendoring`).
    """
    from .vendoring import env_var_for, resolver_for, vendor_directory

    known = [spec.id for spec in topology.functions]
    wanted = list(function_ids) or known
    unknown = [fid for fid in wanted if fid not in known]
    if unknown:
        raise DeployError(
            "--function {}: no such function; the topology has {}".format(
                ", ".join(unknown), ", ".join(known)
            )
        )
    target = target_python_for(runtime, options.device_python)
    source_root = Path(options.source_root or DEFAULT_SOURCE_ROOT)
    if options.site_packages is not None:
        directory = Path(options.site_packages)
        resolved_with = "--site-packages {}".format(directory)
        if not directory.is_dir():
            raise DeployError("--site-packages {} is not a directory".format(directory))
    else:
        _, extras = project_requirements(source_root)
        requirements: List[str] = []
        for fid in wanted:
            requirements += function_roots(topology.function(fid), runtime, extras)[0]
        resolver = resolver_for(target)
        if not resolver.native:
            out(
                "note: no Python {} interpreter found (set {} to one, or install it with "
                "pyenv); resolving with {}".format(target, env_var_for(target), resolver.describe())
            )
        directory = vendor_directory(
            requirements,
            resolver,
            cache=options.cache,
            refresh=options.refresh_vendor,
            out=out,
        )
        resolved_with = resolver.describe()
    environment = SitePackages(directory)
    return {
        fid: build_function_package(
            topology.function(fid),
            Path(options.package_dir),
            environment=environment,
            source_root=source_root,
            runtime=runtime,
            target_python=target,
            allow_warnings=options.allow_warnings,
            resolved_with=resolved_with,
        )
        for fid in wanted
    }
