"""``./dev``: the first run says what it installs and how long it takes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_first_run_says_what_it_installs_and_how_long_it_takes(tmp_path):
    # A fresh copy of the project, no .venv: ./dev creates it for real with pip.
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    copy = tmp_path / "edge-agent"
    for name in filter(None, files):
        source = os.path.join(ROOT, name.decode())
        target = copy / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as src:
            target.write_bytes(src.read())
        os.chmod(target, os.stat(source).st_mode)
    env = dict(os.environ, PYTHON=sys.executable)
    first = subprocess.run(
        ["./dev", "setup"], cwd=copy, capture_output=True, text=True, timeout=900, env=env
    )
    assert first.returncode == 0, first.stderr[-2000:]
    opening = first.stderr.splitlines()[:2]
    assert opening[0].startswith("Setting up .venv: installing edge-agent with its dev tools")
    assert "this usually takes 20-60 s, only on the first run" in opening[1]
    assert (copy / ".venv" / "bin" / "edge-agent").exists()

    again = subprocess.run(
        ["./dev", "setup"], cwd=copy, capture_output=True, text=True, timeout=120, env=env
    )
    assert again.returncode == 0 and "Setting up" not in again.stderr


def test_help_lists_every_command_dev_runs():
    with open(os.path.join(ROOT, "dev"), encoding="utf-8") as handle:
        script = handle.read()
    # The case labels of the command dispatch: "    name)" or "    name|alias)".
    labels = set(re.findall(r"^    ([a-z][a-z0-9-]*)(?:\|[^)]*)?\)$", script, re.MULTILINE))
    assert {"simulate", "test", "lint", "setup"} <= labels
    shown = subprocess.run(
        [os.path.join(ROOT, "dev"), "help"], capture_output=True, text=True, timeout=60
    ).stdout
    listed = set(re.findall(r"^  \./dev ([a-z][a-z0-9-]*)", shown, re.MULTILINE))
    assert labels - {"help"} == listed
