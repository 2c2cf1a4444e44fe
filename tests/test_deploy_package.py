"""deploy package: one reproducible zip per function, with only what the device needs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_deploy_support import REPO, make_site_packages, make_source_root

from agent.topology import default_topology
from deploy.cli import main
from deploy.errors import DeployError
from deploy.package import (
    FIXED_DATE_TIME,
    NEVER_VENDOR,
    build_function_package,
    build_packages,
    python_satisfies,
)

FAKE_DISTS = [
    {
        "name": "requests",
        "version": "2.31.0",
        "requires_python": ">=3.7",
        "requires": [
            "urllib3<3,>=1.21.1",
            "idna<4,>=2.5",
            "charset-normalizer<4,>=2",
            "certifi>=2017.4.17",
            'PySocks!=1.5.7,>=1.5.6; extra == "socks"',
        ],
        "files": {
            "requests/__init__.py": "# requests\n",
            "requests/api.py": "# api\n",
            "requests/__pycache__/api.cpython-311.pyc": "junk",
        },
    },
    {
        "name": "urllib3",
        "version": "1.26.18",
        "requires_python": ">=2.7, !=3.0.*",
        "files": {"urllib3/__init__.py": "# urllib3\n"},
    },
    {
        "name": "idna",
        "version": "3.4",
        "requires_python": ">=3.5",
        "files": {"idna/__init__.py": "# idna\n"},
    },
    {
        "name": "charset-normalizer",
        "version": "3.3.2",
        "requires_python": ">=3.7.0",
        "files": {
            "charset_normalizer/__init__.py": "# cn\n",
            "charset_normalizer/md.py": "# md\n",
            "charset_normalizer/md.cpython-311-x86_64-linux-gnu.so": "ELF",
        },
    },
    {
        "name": "certifi",
        "version": "2024.2.2",
        "files": {"certifi/__init__.py": "# certifi\n", "certifi/cacert.pem": "# bundle\n"},
    },
    {
        "name": "greengrasssdk",
        "version": "1.6.1",
        "requires": ["cbor2 (~=5.4.2)"],
        "files": {"greengrasssdk/__init__.py": "# gg\n"},
    },
    {
        "name": "cbor2",
        "version": "5.4.6",
        "files": {
            "cbor2/__init__.py": "# cbor2\n",
            "_cbor2.cpython-311-x86_64-linux-gnu.so": "ELF",
        },
    },
    {
        "name": "awsiotsdk",
        "version": "1.21.0",
        "requires": ["awscrt==0.19.19"],
        "files": {"awsiot/__init__.py": "# awsiot\n"},
    },
    {
        "name": "awscrt",
        "version": "0.19.19",
        "files": {"awscrt/__init__.py": "# crt\n", "_awscrt.abi3.so": "ELF"},
    },
    {
        "name": "sense-hat",
        "version": "2.6.0",
        "requires": ["numpy", "pillow"],
        "files": {"sense_hat/__init__.py": "# sense\n"},
    },
    {
        "name": "boto3",
        "version": "1.34.0",
        "requires": ["botocore"],
        "files": {"boto3/__init__.py": "# boto3\n"},
    },
    {"name": "botocore", "version": "1.34.0", "files": {"botocore/__init__.py": "# botocore\n"}},
]


@pytest.fixture
def src(tmp_path):
    return make_source_root(tmp_path / "src")


@pytest.fixture
def site(tmp_path):
    return make_site_packages(tmp_path / "site", FAKE_DISTS)


def names(path: Path):
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def top_levels(path: Path):
    return {name.split("/")[0] for name in names(path)}


def test_zip_holds_entry_module_agent_and_needed_deps(tmp_path, src, site):
    results = build_packages(
        default_topology(), tmp_path / "out", source_root=src, site_packages=site
    )
    sensor, anomaly = results["sensor"].path, results["anomaly"].path
    assert sensor.name == "edge-agent-sensor.zip"
    entries = names(sensor)
    assert "functions/__init__.py" in entries
    assert "functions/sensor_function.py" in entries
    assert "functions/anomaly_function.py" not in entries  # only its own entry module
    assert "agent/__init__.py" in entries and "agent/greengrass/__init__.py" in entries
    assert "functions/anomaly_function.py" in names(anomaly)
    http_stack = {"requests", "urllib3", "idna", "charset_normalizer", "certifi"}
    # Only the anomaly function talks to ServiceNow: the sensor zip carries no HTTP stack.
    assert http_stack <= top_levels(anomaly)
    assert not http_stack & top_levels(sensor)
    for package in (sensor, anomaly):
        tops = top_levels(package)
        assert {"greengrasssdk", "cbor2"} <= tops
        assert not tops & {"boto3", "botocore", "s3transfer", "jmespath"}
        assert not tops & {"sense_hat", "RTIMU", "numpy", "PIL"}
        for entry in names(package):
            assert "__pycache__" not in entry and not entry.endswith((".pyc", ".so"))
            assert ".dist-info" not in entry
    # the pure-Python halves of packages with optional accelerators
    assert "charset_normalizer/md.py" in names(anomaly) and "cbor2/__init__.py" in entries
    skipped = {s["name"]: s["reason"] for s in results["sensor"].skipped}
    assert "extra:pi" in skipped and "apt" in skipped["extra:pi"]


def test_never_boto3_or_botocore_from_the_real_environment(tmp_path, src):
    """The packaging environment has boto3 and botocore installed: still never vendored."""
    import boto3  # noqa: F401  (installed here)

    results = build_packages(default_topology(), tmp_path / "out", source_root=src)
    for result in results.values():
        tops = top_levels(result.path)
        assert not tops & set(NEVER_VENDOR), tops
        assert "greengrasssdk" in tops
        assert ("requests" in tops) == (result.path.name == "edge-agent-anomaly.zip")
        assert not any(n.endswith(".so") for n in names(result.path))


def test_same_inputs_give_byte_identical_zips(tmp_path, src, site):
    first = build_packages(default_topology(), tmp_path / "a", source_root=src, site_packages=site)
    # touch every source file: timestamps must not leak into the zip
    for path in src.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build_packages(default_topology(), tmp_path / "b", source_root=src, site_packages=site)
    for fid in first:
        a = hashlib.sha256(first[fid].path.read_bytes()).hexdigest()
        b = hashlib.sha256(second[fid].path.read_bytes()).hexdigest()
        assert a == b == first[fid].sha256


def test_entries_are_sorted_with_fixed_time_and_mode(tmp_path, src, site):
    result = build_function_package(
        default_topology().function("anomaly"), tmp_path, source_root=src, site_packages=site
    )
    with zipfile.ZipFile(result.path) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == FIXED_DATE_TIME
        assert (info.external_attr >> 16) & 0o777 == 0o644
    manifest = json.loads(result.path.with_name("edge-agent-anomaly.manifest.json").read_text())
    assert manifest["sha256"] == result.sha256
    assert manifest["code_sha256"] == result.code_sha256


def test_code_change_changes_the_zip(tmp_path, src, site):
    spec = default_topology().function("sensor")
    before = build_function_package(spec, tmp_path / "a", source_root=src, site_packages=site)
    (src / "functions" / "sensor_function.py").write_text("def function_handler(e, c):\n    pass\n")
    after = build_function_package(spec, tmp_path / "b", source_root=src, site_packages=site)
    assert before.sha256 != after.sha256


def test_v2_artifact_leaves_compiled_sdk_to_pip(tmp_path, src, site):
    result = build_function_package(
        default_topology().function("sensor"),
        tmp_path,
        source_root=src,
        site_packages=site,
        runtime="v2",
    )
    tops = top_levels(result.path)
    assert result.path.name == "edge-agent-sensor-v2.zip"
    assert "awsiot" not in tops and "awscrt" not in tops and "greengrasssdk" not in tops
    assert "requests" not in tops  # the sensor needs no HTTP client
    assert result.device_requirements == ["awsiotsdk>=1.11"]


def test_python_version_mismatch_is_reported_and_strict_fails(tmp_path, src):
    site = make_site_packages(
        tmp_path / "site310",
        [
            {
                "name": "requests",
                "version": "9.0",
                "requires_python": ">=3.10",
                "files": {"requests/__init__.py": ""},
            },
            {
                "name": "greengrasssdk",
                "version": "1.6.1",
                "files": {"greengrasssdk/__init__.py": ""},
            },
        ],
    )
    spec = default_topology().function("anomaly")
    result = build_function_package(spec, tmp_path / "out", source_root=src, site_packages=site)
    assert any("requires Python >=3.10" in w for w in result.warnings)
    with pytest.raises(DeployError, match="--strict"):
        build_function_package(
            spec, tmp_path / "out", source_root=src, site_packages=site, strict=True
        )


def test_missing_dependency_is_a_warning_not_a_crash(tmp_path, src):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = build_function_package(
        default_topology().function("anomaly"), tmp_path / "o", source_root=src, site_packages=empty
    )
    assert any("requests" in w and "not installed" in w for w in result.warnings)
    assert top_levels(result.path) == {"agent", "functions"}


@pytest.mark.parametrize(
    "spec,version,ok",
    [
        (">=3.10", "3.8", False),
        (">=3.7", "3.8", True),
        (">=2.7, !=3.0.*", "3.8", True),
        ("~=3.7", "3.8", True),
        ("~=3.9.0", "3.8", False),
        ("<3.8", "3.8", False),
        ("==3.*", "3.8", True),
        ("!=3.8.*", "3.8", False),
        ("", "3.8", True),
    ],
)
def test_python_satisfies(spec, version, ok):
    assert python_satisfies(spec, version) is ok


def test_missing_function_module_is_a_clear_error(tmp_path, src, capsys):
    (src / "functions" / "sensor_function.py").unlink()
    code = main(
        [
            "package",
            "--out",
            str(tmp_path / "o"),
            "--source-root",
            str(src),
            "--site-packages",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "functions.sensor_function not found" in capsys.readouterr().err


def test_package_cli_prints_hashes(tmp_path, src, site, capsys):
    code = main(
        [
            "package",
            "--out",
            str(tmp_path / "o"),
            "--source-root",
            str(src),
            "--site-packages",
            str(site),
            "--function",
            "anomaly",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "edge-agent-anomaly.zip" in out and "edge-agent-sensor.zip" not in out
    assert "not vendored: extra:pi" not in out  # the anomaly function needs no Sense HAT


@pytest.mark.skipif(
    not (REPO / "functions" / "sensor_function.py").is_file(), reason="function modules not here"
)
def test_real_zips_are_self_contained(tmp_path):
    """Built from this checkout and this environment, each zip alone (python -I: no
    site-packages) finds its entry module and imports its vendored dependencies."""
    results = build_packages(default_topology(), tmp_path)
    for fid, result in results.items():
        module = default_topology().function(fid).module
        code = (
            "import sys, importlib.util; sys.path.insert(0, {zip!r}); "
            "assert importlib.util.find_spec({module!r}) is not None; "
            "import agent, greengrasssdk, cbor2; "
            "assert greengrasssdk.__file__.startswith({zip!r}), greengrasssdk.__file__"
        ).format(zip=str(result.path), module=module)
        if fid == "anomaly":
            code += (
                "; import requests, charset_normalizer, certifi; "
                "assert requests.__file__.startswith({zip!r}), requests.__file__"
            ).format(zip=str(result.path))
        subprocess.run(
            [sys.executable, "-I", "-c", code], cwd=str(tmp_path), check=True, timeout=60
        )
