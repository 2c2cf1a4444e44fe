"""The packages carry bytecode the device's Python loads as is, so a start compiles nothing.

A V1 core unpacks the zip into a folder its functions' user cannot write, so without
``.pyc`` in the zip every start compiles every module again. These tests unpack the real
V1 zips (this checkout, dependencies resolved for 3.8), make them read-only, and run the
function module under a real Python 3.8 with ``-v``, which names the file each module's
code came from.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import zipfile

import pytest
from test_deploy_support import python38

from agent.topology import default_topology
from deploy.package import PackageOptions, build_packages


@pytest.fixture(scope="module")
def v1_zips(tmp_path_factory):
    python38()  # skips, or fails in CI, without a Python 3.8
    out = tmp_path_factory.mktemp("zips")
    first = build_packages(default_topology(), PackageOptions(package_dir=out / "a"))
    again = build_packages(default_topology(), PackageOptions(package_dir=out / "b"))
    return first, again


def _read_only_copy(zip_path, where):
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(where)
    for root, dirs, files in os.walk(where):
        for name in files + dirs:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return where


def test_every_module_a_start_imports_comes_from_the_shipped_bytecode(v1_zips, tmp_path):
    first, _ = v1_zips
    for fid, result in first.items():
        assert result.bytecode == "cpython-38", result.bytecode
        unpacked = _read_only_copy(result.path, tmp_path / fid)
        module = default_topology().function(fid).module
        done = subprocess.run(
            [
                python38(),
                "-I",
                "-S",
                "-v",
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); import " + module,
                str(unpacked),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        lines = [line for line in done.stderr.splitlines() if str(unpacked) in line]
        loaded = [line for line in lines if line.startswith("# code object from ")]
        project = [line for line in loaded if "/agent/" in line or "/functions/" in line]
        assert len(project) >= 3, lines[:20]
        # Every module of the package came from a .pyc: none compiled from its source
        # ("code object from …/x.py"), no bytecode written beside it ("created …").
        assert all(line.rstrip("'").endswith(".pyc") for line in loaded), loaded
        assert [line for line in lines if line.startswith("# created")] == []


def test_the_bytecode_is_unchecked_hash_for_3_8_and_the_zips_reproduce(v1_zips):
    first, again = v1_zips
    magic = subprocess.run(
        [
            python38(),
            "-c",
            "import importlib.util,sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert magic != importlib.util.MAGIC_NUMBER.hex()  # 3.8's, not this tooling Python's
    for fid, result in first.items():
        with zipfile.ZipFile(result.path) as archive:
            pycs = [n for n in archive.namelist() if n.endswith(".pyc")]
            sources = [n for n in archive.namelist() if n.endswith(".py")]
            assert len(pycs) == len(sources)
            for name in pycs:
                header = archive.read(name)[:8]
                assert header[:4].hex() == magic, name
                # PEP 552 flags: hash-based (bit 0), source not checked (bit 1 clear).
                assert int.from_bytes(header[4:8], "little") == 0b01, name
        assert again[fid].sha256 == result.sha256  # byte-identical, bytecode included
