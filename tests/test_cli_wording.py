"""What the commands print for a person: counted nouns, the variables table, the outbox hint.

Every command runs as its own process, as a user types it; the table also on a real
terminal (a pseudo-terminal), where it is text, not Markdown.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

from agent.config import VARIABLES, markdown_table
from agent.standalone.words import counted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def edge_agent(*args, stdout=subprocess.PIPE, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="80")
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=env,
    )


def on_a_terminal(*args) -> str:
    """``edge-agent ARGS`` with its stdout on a pseudo-terminal; what the terminal shows."""
    leader, follower = pty.openpty()
    try:
        result = edge_agent(*args, stdout=follower)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 0, result.stderr
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_counted_nouns_take_their_number():
    assert counted(1, "breach") == "1 breach"
    assert counted(2, "breach") == "2 breaches"
    assert counted(0, "incident") == "0 incidents"
    assert counted(1, "anomaly event") == "1 anomaly event"
    assert counted(3, "anomaly event") == "3 anomaly events"
    assert counted(2, "stretch of identical readings", "stretches of identical readings") == (
        "2 stretches of identical readings"
    )


def test_a_run_with_one_breach_says_1_breach_and_1_incident(tmp_path):
    result = edge_agent(
        "simulate", "--scenario", "humid-spell", "--fast", "--state-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    done = [line for line in result.stdout.splitlines() if " done " in f" {line} "]
    assert done, result.stdout
    assert "1 breach;" in done[-1] and "1 incident opened" in done[-1], done[-1]
    assert not re.search(r"\b1 (breaches|incidents|readings|actions)\b", result.stdout)


def test_config_table_is_text_in_a_terminal_and_markdown_when_piped():
    shown = on_a_terminal("config-table")
    assert "| --- |" not in shown and "`" not in shown
    names = [line.split()[0] for line in shown.splitlines() if line and not line[0].isspace()]
    assert names == [var.name for var in VARIABLES]
    assert max(len(line) for line in shown.splitlines()) <= 100

    piped = edge_agent("config-table")
    assert piped.stdout == markdown_table() + "\n"
    assert on_a_terminal("config-table", "--markdown") == markdown_table() + "\n"
    assert edge_agent("config-table", "--format", "text").stdout == shown


def test_outbox_without_state_dir_says_which_folder_it_looked_in_and_how_to_name_one(tmp_path):
    from agent.config import DEFAULT_STATE_DIR

    result = edge_agent("outbox")
    assert result.returncode == 2
    if os.path.exists(os.path.join(DEFAULT_STATE_DIR, "outbox.sqlite3")):
        pytest.skip("this machine runs the agent: there is an outbox to show")
    assert f"no outbox at {DEFAULT_STATE_DIR}/outbox.sqlite3" in result.stderr
    assert "--state-dir DIR" in result.stderr

    named = edge_agent("outbox", "--state-dir", str(tmp_path))
    assert named.returncode == 2
    assert "--state-dir DIR" not in named.stderr  # the folder was named: no hint needed
