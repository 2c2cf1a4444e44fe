"""A V2 component installs with no network: its wheels travel with it, per architecture.

``deploy v2 plan --out DIR`` writes, beside each recipe, the artifact files its URIs name:
the code zip and one zip of wheels per device architecture, resolved at plan time with
``pip download --platform ... --python-version ... --only-binary=:all:``. Each recipe
has one manifest per architecture whose ``Install`` runs ``pip install --no-index
--find-links`` against them. These tests resolve from a local wheelhouse (``--wheelhouse
DIR --no-index``: tiny but real wheels with PyPI's names and tags) and run the amd64
manifest's ``Install`` on this machine, as the nucleus would, with the network cut;
``test_deploy_pi_userland.py`` runs the aarch64 one in a Pi's userland with the real wheels.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from nucleus_lifecycle import NucleusLayout, load_plan, run_step
from test_deploy_support import (
    DEVICE_DISTS,
    make_site_packages,
    make_source_root,
    make_wheel,
    make_wheelhouse,
)

from deploy.cli import main
from deploy.v2.recipes import recipe_errors
from deploy.wheels import platform_tags, resolve_wheels


def _planner(tmp_path: Path):
    """``v2 plan --out`` with the wheels from a local wheelhouse: (folder, what it printed)."""
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    wheelhouse = make_wheelhouse(tmp_path / "wheelhouse")
    out = tmp_path / "plan"

    def plan(*extra: str):
        code = main(
            ["v2", "plan", "--out", str(out), "--state", str(tmp_path / "none.json")]
            + ["--source-root", str(src), "--site-packages", str(site)]
            + ["--package-dir", str(tmp_path / "pkg"), "--bucket", "artifacts"]
            + ["--wheelhouse", str(wheelhouse), "--no-index", *extra]
        )
        assert code == 0
        return out, ""

    return plan


@pytest.fixture
def planned(tmp_path, capsys):
    plan = _planner(tmp_path)

    def run(*extra: str):
        out, _ = plan(*extra)
        return out, capsys.readouterr().out

    return run


@pytest.fixture(scope="module")
def shared_plan(tmp_path_factory):
    """One plan for the tests that only read it (or copy what it names)."""
    out, _ = _planner(tmp_path_factory.mktemp("shared"))()
    return out


def test_the_plan_folder_holds_every_artifact_its_recipes_name(planned):
    out, printed = planned()
    recipes, _deployment = load_plan(out)
    summary = json.loads((out / "plan.json").read_text())
    named = set()
    for recipe in recipes.values():
        assert recipe_errors(recipe) == []
        for manifest in recipe["Manifests"]:
            for artifact in manifest["Artifacts"]:
                name = artifact["URI"].rsplit("/", 1)[-1]
                assert artifact["URI"].startswith("s3://artifacts/edge-agent/artifacts/")
                named.add(name)
                data = (out / name).read_bytes()  # beside the recipe, by its file name
                assert summary["artifacts"][name] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert set(summary["artifacts"]) == named
    assert "edge-agent-sensor-v2-wheels-aarch64.zip" in named
    assert "edge-agent-anomaly-v2-wheels-amd64.zip" in named
    assert any(
        "aws s3 cp edge-agent-sensor-v2-wheels-aarch64.zip" in c for c in summary["commands"]
    )
    assert "note: armv7l: PyPI has no armv7l (32-bit Raspberry Pi OS) wheel of awscrt" in printed


def test_one_manifest_per_architecture_each_with_its_own_wheels(shared_plan):
    out = shared_plan
    recipe = load_plan(out)[0]["com.edgeagent.sensor"]
    platforms = [m["Platform"] for m in recipe["Manifests"]]
    assert platforms == [
        {"os": "linux", "architecture": "aarch64"},
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm"},
    ]
    for manifest, machine in zip(recipe["Manifests"][:2], ("aarch64", "x86_64")):
        install = manifest["Lifecycle"]["Install"]["Script"]
        assert "pip install --no-index --find-links" in install
        wheels = manifest["Artifacts"][1]["URI"].rsplit("/", 1)[-1]
        with zipfile.ZipFile(out / wheels) as archive:
            names = sorted(archive.namelist())
            pins = archive.read("requirements.txt").decode().split()
        assert names == [
            "awscrt-0.19.19-cp311-abi3-manylinux_2_17_{0}.manylinux2014_{0}.whl".format(machine),
            "awsiotsdk-1.21.0-py3-none-any.whl",
            "requirements.txt",
        ]
        assert pins == ["awscrt==0.19.19", "awsiotsdk==1.21.0"]
        assert manifest["Lifecycle"]["Run"]["Script"].startswith("{work:path}/venv/bin/python")
    for manifest in recipe["Manifests"]:  # no step may reach PyPI
        assert "pip install awsiotsdk" not in json.dumps(manifest)


def test_plan_is_reproducible(planned, tmp_path):
    out, _ = planned()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    out, _ = planned()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_platform_tags_follow_the_devices_glibc():
    tags = platform_tags("aarch64", "3.11")  # Bookworm: glibc 2.36
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags and "manylinux_2_37_aarch64" not in tags
    assert platform_tags("aarch64", "3.9")[0] == "manylinux_2_31_aarch64"  # Bullseye
    assert all(t.endswith("x86_64") for t in platform_tags("amd64", "3.11"))


def test_a_wheel_for_a_newer_glibc_than_the_devices_is_not_chosen(tmp_path):
    """A manylinux_2_38 wheel would fail to load on Bookworm's glibc 2.36."""
    house = tmp_path / "house"
    make_wheel(house, "awscrt", "0.20.0", "cp311-abi3-manylinux_2_38_aarch64")
    make_wheel(house, "awscrt", "0.19.19", "cp311-abi3-manylinux_2_17_aarch64")
    wheels = resolve_wheels(
        ["awscrt"], "aarch64", "3.11", wheelhouse=house, offline=True, cache=tmp_path / "c"
    )
    assert wheels.pins == ["awscrt==0.19.19"]


# --- the Install step, run as the nucleus runs it ----------------------------------------


def _layout(tmp_path, out, component="com.edgeagent.sensor", architecture="amd64"):
    return NucleusLayout(
        Path("/"),
        out,
        component,
        architecture,
        greengrass=str(tmp_path / "device" / "greengrass" / "v2"),
    )


def _system_python_env(tmp_path) -> dict:
    """The Install step calls ``python3``: this interpreter's version (the wheels were
    planned for 3.11, the version of the Python running these tests)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python3 = bin_dir / "python3"
    if not python3.exists():
        python3.symlink_to(getattr(sys, "_base_executable", sys.executable))
    return {"PATH": "{}:/usr/bin:/bin".format(bin_dir), "HOME": str(tmp_path)}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the plan is for Python 3.11")
def test_install_works_with_the_network_cut_and_a_rerun_is_a_no_op(shared_plan, tmp_path):
    out = shared_plan
    layout = _layout(tmp_path, out)
    env = _system_python_env(tmp_path)
    done = run_step(layout, "Install", base_env=env)  # unshare --net: no route anywhere
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    venv = layout.host(layout.paths["work:path"]) / "venv"
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import awscrt, awsiot; print(awscrt.__version__)"],
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == "0.19.19", shown.stderr
    # The nucleus runs Install at every start: the second run must change nothing.
    log = layout.host(layout.paths["work:path"]) / "install.log"
    before = {p: p.stat().st_mtime_ns for p in (venv / "bin" / "python", log)}
    again = run_step(layout, "Install", base_env=env)
    assert again.returncode == 0 and again.stderr == ""
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the plan is for Python 3.11")
def test_a_venv_from_other_wheels_is_replaced(shared_plan, tmp_path):
    """A new component version with other wheels, same work folder: its stamp differs."""
    layout = _layout(tmp_path, shared_plan)
    venv = layout.host(layout.paths["work:path"]) / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 3\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".edge-agent-wheels").write_text("sha256-of-the-previous-wheels\n")
    done = run_step(layout, "Install", base_env=_system_python_env(tmp_path))
    assert done.returncode == 0, done.stderr
    wheels = (shared_plan / "edge-agent-sensor-v2-wheels-amd64.zip").read_bytes()
    assert (venv / ".edge-agent-wheels").read_text().strip() == hashlib.sha256(wheels).hexdigest()
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import awscrt; print(awscrt.__version__)"],
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == "0.19.19", shown.stderr


def test_install_on_another_python_is_one_line_naming_the_fix(shared_plan, tmp_path):
    out = shared_plan
    layout = _layout(tmp_path, out)
    env = _system_python_env(tmp_path)
    fake = tmp_path / "bin" / "python3"
    fake.unlink()
    fake.write_text("#!/bin/sh\nexit 1\n")  # 'sys.version_info[:2] != (3, 11)' is true
    fake.chmod(0o755)
    done = run_step(layout, "Install", base_env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("edge-agent install: the bundled wheels are for Python 3.11")
    assert "--device-python" in done.stderr


def test_a_failing_pip_is_one_line_pointing_at_its_log(shared_plan, tmp_path):
    out = shared_plan
    layout = _layout(tmp_path, out)
    wheels = layout.host(layout.paths["artifacts:decompressedPath"])
    for wheel in wheels.rglob("awscrt-*.whl"):
        wheel.unlink()  # a damaged download: pip cannot find awscrt without the index
    done = run_step(layout, "Install", base_env=_system_python_env(tmp_path))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "pip could not install the bundled wheels offline" in done.stderr
    assert "install.log" in done.stderr and "Traceback" not in done.stderr
    log = (layout.host(layout.paths["work:path"]) / "install.log").read_text()
    assert "awscrt" in log  # the details are kept, in the log


def test_armv7l_without_wheels_stops_with_one_line_naming_cause_and_remedy(shared_plan, tmp_path):
    out = shared_plan
    layout = _layout(tmp_path, out, architecture="arm")
    assert layout.artifact_names() == ["edge-agent-sensor-v2.zip"]
    done = run_step(layout, "Install", base_env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    line = done.stderr.strip()
    assert "PyPI has no armv7l (32-bit Raspberry Pi OS) wheel of awscrt" in line
    assert "64-bit Raspberry Pi OS" in line and "--wheelhouse" in line


def test_armv7l_with_a_wheel_you_built_installs_offline_too(planned, tmp_path):
    make_wheel(tmp_path / "wheelhouse", "awscrt", "0.19.19", "cp311-abi3-linux_armv7l")
    out, printed = planned()
    recipe = load_plan(out)[0]["com.edgeagent.anomaly"]
    arm = [m for m in recipe["Manifests"] if m["Platform"]["architecture"] == "arm"][0]
    assert "--no-index --find-links" in arm["Lifecycle"]["Install"]["Script"]
    with zipfile.ZipFile(out / "edge-agent-anomaly-v2-wheels-armv7l.zip") as archive:
        assert "awscrt-0.19.19-cp311-abi3-linux_armv7l.whl" in archive.namelist()
    assert "armv7l: PyPI has no" not in printed


def test_unknown_architecture_is_a_usage_error(tmp_path, capsys):
    assert main(["v2", "plan", "--out", str(tmp_path), "--device-arch", "mips"]) == 2
    assert "invalid choice: 'mips'" in capsys.readouterr().err


def test_only_the_architectures_asked_for(planned):
    out, _ = planned("--device-arch", "aarch64")
    recipe = load_plan(out)[0]["com.edgeagent.sensor"]
    assert [m["Platform"]["architecture"] for m in recipe["Manifests"]] == ["aarch64"]
    assert not (out / "edge-agent-sensor-v2-wheels-amd64.zip").exists()


def test_no_index_without_a_wheelhouse_is_refused(tmp_path, capsys):
    code = main(["v2", "plan", "--out", str(tmp_path), "--no-index"])
    assert code == 2 and "--no-index needs --wheelhouse DIR" in capsys.readouterr().err


if os.geteuid() != 0:  # unshare --net needs root
    pytestmark = pytest.mark.skip(reason="the install tests cut the network with unshare")
