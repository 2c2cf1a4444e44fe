"""deploy package: one reproducible zip per function, with only what the device needs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from test_deploy_support import REPO, make_site_packages, make_source_root, python38

from agent.topology import default_topology
from deploy.cli import main
from deploy.dependencies import NEVER_VENDOR, python_satisfies
from deploy.errors import DeployError
from deploy.package import FIXED_DATE_TIME, PackageOptions, build_packages

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
        "name": "smbus2",
        "version": "0.6.1",
        "files": {"smbus2/__init__.py": "# smbus2\n", "smbus2/smbus2.py": "# SMBus\n"},
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


def make_zips(src, site, out, *function_ids, runtime="v1", **options):
    """build_packages from a fake source root and site-packages; one result or a dict."""
    results = build_packages(
        default_topology(),
        PackageOptions(package_dir=out, source_root=src, site_packages=site, **options),
        runtime=runtime,
        function_ids=function_ids,
    )
    return results[function_ids[0]] if len(function_ids) == 1 else results


def names(path: Path):
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def top_levels(path: Path):
    return {name.split("/")[0] for name in names(path)}


def test_zip_holds_entry_module_agent_and_needed_deps(tmp_path, src, site):
    results = make_zips(src, site, tmp_path / "out")
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
    # Only the sensor reads the Sense HAT: over I2C with smbus2 (pure Python), in its zip.
    assert "smbus2/smbus2.py" in entries and "smbus2" not in top_levels(anomaly)
    for package in (sensor, anomaly):
        tops = top_levels(package)
        assert {"greengrasssdk", "cbor2"} <= tops
        assert not tops & {"boto3", "botocore", "s3transfer", "jmespath"}
        assert not tops & {"sense_hat", "RTIMU", "numpy", "PIL"}
        listed = set(names(package))
        for entry in listed:
            assert not entry.endswith(".so") and ".dist-info" not in entry
            # Bytecode: only what was compiled here for the V1 core's Python, one per source;
            # the stray .pyc of the checkout and of the site-packages never ship.
            if entry.endswith(".pyc"):
                assert entry.endswith(".cpython-38.pyc"), entry
                folder, _, pyc = entry.rpartition("/__pycache__/")
                assert "{}/{}.py".format(folder, pyc.split(".")[0]) in listed, entry
        assert "requests/__pycache__/api.cpython-311.pyc" not in listed
        assert "agent/stale.pyc" not in listed
    # the pure-Python halves of packages with optional accelerators
    assert "charset_normalizer/md.py" in names(anomaly) and "cbor2/__init__.py" in entries
    skipped = {s["name"]: s["reason"] for s in results["sensor"].skipped}
    assert "extra:pi" in skipped and "apt" in skipped["extra:pi"]


def test_never_boto3_or_botocore_from_the_tooling_environment(tmp_path, src):
    """This venv has boto3 and botocore installed: vendoring from it still leaves them out."""
    import sysconfig

    import boto3  # noqa: F401  (installed here)

    venv = Path(sysconfig.get_paths()["purelib"])
    results = make_zips(src, venv, tmp_path / "out", allow_warnings=True)
    for result in results.values():
        tops = top_levels(result.path)
        assert not tops & set(NEVER_VENDOR), tops
        assert "greengrasssdk" in tops
        assert ("requests" in tops) == (result.path.name == "edge-agent-anomaly.zip")
        assert not any(n.endswith(".so") for n in names(result.path))
    # this venv's requests is for the tooling's Python, not the V1 core's 3.8: said so
    assert any("requires Python" in w for w in results["anomaly"].warnings)


def test_same_inputs_give_byte_identical_zips(tmp_path, src, site):
    first = make_zips(src, site, tmp_path / "a")
    # touch every source file: timestamps must not leak into the zip
    for path in src.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = make_zips(src, site, tmp_path / "b")
    for fid in first:
        a = hashlib.sha256(first[fid].path.read_bytes()).hexdigest()
        b = hashlib.sha256(second[fid].path.read_bytes()).hexdigest()
        assert a == b == first[fid].sha256


def test_entries_are_sorted_with_fixed_time_and_mode(tmp_path, src, site):
    result = make_zips(src, site, tmp_path, "anomaly")
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
    before = make_zips(src, site, tmp_path / "a", "sensor")
    (src / "functions" / "sensor_function.py").write_text("def function_handler(e, c):\n    pass\n")
    after = make_zips(src, site, tmp_path / "b", "sensor")
    assert before.sha256 != after.sha256


def test_v2_artifact_leaves_compiled_sdk_to_pip(tmp_path, src, site):
    result = make_zips(src, site, tmp_path, "sensor", runtime="v2")
    tops = top_levels(result.path)
    assert result.path.name == "edge-agent-sensor-v2.zip"
    assert "awsiot" not in tops and "awscrt" not in tops and "greengrasssdk" not in tops
    assert "requests" not in tops  # the sensor needs no HTTP client
    assert "smbus2" in tops  # the i2c backend's bus, carried as in the V1 zip
    assert result.device_requirements == ["awsiotsdk>=1.11"]
    # expected for V2 (the component's Install step pip-installs it): not a warning
    assert result.warnings == []
    assert {
        "name": "awscrt",
        "reason": "compiled for this machine; pip installs it on the device",
    } in (result.skipped)


def test_a_release_that_needs_a_newer_python_is_an_error_by_default(tmp_path, src, capsys):
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
    code = main(
        ["v1", "package", "--out", str(tmp_path / "out"), "--source-root", str(src)]
        + ["--site-packages", str(site), "--function", "anomaly"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "the anomaly zip would not work on Python 3.8" in err
    assert "requests 9.0 requires Python >=3.10" in err and "--allow-warnings" in err
    assert not (tmp_path / "out" / "edge-agent-anomaly.zip").exists()
    # the escape hatch packages it anyway and still says why it is wrong
    result = make_zips(src, site, tmp_path / "out", "anomaly", allow_warnings=True)
    assert any("requires Python >=3.10" in w for w in result.warnings)
    # the same release is fine for a V2 device with Python 3.11
    assert make_zips(src, site, tmp_path / "v2", "anomaly", runtime="v2").warnings == []


def test_a_missing_dependency_is_an_error_for_v1(tmp_path, src):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeployError, match="requests>=2.25 is not in"):
        make_zips(src, empty, tmp_path / "o", "anomaly")
    result = make_zips(src, empty, tmp_path / "o", "anomaly", allow_warnings=True)
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
            "v1",
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
            "v1",
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
    assert "for Python 3.8, dependencies from --site-packages" in out


ZIP_CHECK = r"""
import importlib, json, os, sys
root = os.path.abspath(sys.argv[1])
sys.path.insert(0, root)
module = importlib.import_module(sys.argv[2])
assert callable(module.function_handler)
import agent, cbor2, greengrasssdk
for mod in (agent, cbor2, greengrasssdk):
    assert mod.__file__.startswith(root), mod.__file__
assert cbor2.loads(cbor2.dumps({"t": 31.5})) == {"t": 31.5}
report = {"python": "%d.%d" % sys.version_info[:2]}
if sys.argv[2] == "functions.sensor_function":
    # The i2c backend runs on the zip's own smbus2, up to opening a bus this machine lacks.
    import smbus2
    assert smbus2.__file__.startswith(root), smbus2.__file__
    from agent.errors import SensorError
    from agent.sensors.i2c import I2CSensor
    try:
        I2CSensor(bus=9999)
    except SensorError as exc:
        report["i2c"] = str(exc)
if sys.argv[3:]:
    import requests, urllib3
    assert requests.__file__.startswith(root) and urllib3.__file__.startswith(root)
    from agent.credentials import Credentials
    from agent.servicenow.client import TableClient
    url, user = sys.argv[3], sys.argv[4]
    password = sys.stdin.readline().strip()
    client = TableClient(url, lambda: Credentials("basic", username=user, password=password))
    created = client.create(
        {"short_description": "from the V1 zip on Python 3.8", "correlation_id": "zip-py38"}
    )
    found = client.find_by_correlation("zip-py38")
    report.update(number=created["number"], found=found["sys_id"] == created["sys_id"],
                  requests=requests.__version__, urllib3=urllib3.__version__)
print(json.dumps(report))
"""


@pytest.mark.skipif(
    not (REPO / "functions" / "sensor_function.py").is_file(), reason="function modules not here"
)
def test_real_v1_zips_work_on_python_3_8(tmp_path, standin, password):
    """Each V1 zip, built from this checkout with dependencies resolved for Python 3.8,
    unpacked alone (python -I -S: no site-packages at all), imports its handler module
    under a real 3.8 interpreter; the anomaly zip's vendored requests stack then creates
    and finds an incident in the ServiceNow stand-in over HTTP."""
    from conftest import SNOW_USER

    python = python38()
    results = build_packages(
        default_topology(), PackageOptions(package_dir=tmp_path / "zips"), runtime="v1"
    )
    for fid, result in results.items():
        assert result.target_python == "3.8" and result.warnings == []
        unpacked = tmp_path / fid
        with zipfile.ZipFile(result.path) as archive:
            archive.extractall(unpacked)
        args = [python, "-I", "-S", "-c", ZIP_CHECK, str(unpacked)]
        args.append(default_topology().function(fid).module)
        if fid == "anomaly":
            args += [standin.url, SNOW_USER]
        done = subprocess.run(
            args, input=password + "\n", capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["python"] == "3.8"
        if fid == "sensor":
            assert report["i2c"].startswith("no I2C bus /dev/i2c-9999: I2C is not enabled")
        if fid == "anomaly":
            assert report["found"] and report["number"].startswith("INC")
            vendored = {v["name"]: v["version"] for v in result.vendored}
            assert vendored["requests"] == report["requests"]
    incidents = standin.incidents()
    assert [i["correlation_id"] for i in incidents] == ["zip-py38"]


def test_what_the_tooling_python_would_vendor_fails_on_3_8(tmp_path, password):
    """Why resolving for the target matters: this venv's own requests stack, vendored
    as the seed did, breaks at import on the core's Python 3.8 (the failure the
    default resolution prevents)."""
    import sysconfig

    python = python38()
    venv = Path(sysconfig.get_paths()["purelib"])
    result = build_packages(
        default_topology(),
        PackageOptions(package_dir=tmp_path, site_packages=venv, allow_warnings=True),
        function_ids=["anomaly"],
    )["anomaly"]
    if not any("requires Python" in w for w in result.warnings):
        pytest.skip("this venv's requests stack still supports Python 3.8")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(result.path) as archive:
        archive.extractall(unpacked)
    done = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import requests",
            str(unpacked),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "Error" in done.stderr
