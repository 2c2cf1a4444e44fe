"""The documents a user reads: a short README that sends them on, and links that arrive.

The README's opening screen says what the project does, the two commands, and where to
go next; the details live in ``docs/``. Every relative link in the project's Markdown
must name a file that exists and, with ``#anchor``, a heading that file has (GitHub's
anchor rules), so moving a section cannot leave a reader at a dead end.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _documents() -> list:
    found = [REPO / "README.md", REPO / "CHANGELOG.md"]
    for folder in ("docs", "deploy", "certs-example", "tests", "benchmarks"):
        found += sorted((REPO / folder).rglob("*.md"))
    return [p for p in found if ".venv" not in p.parts and p.exists()]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip()).lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "-_ " or category[0] in "LN":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def _anchors(path: Path) -> set:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict = {}
    anchors = set()
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = _anchor(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else "{}-{}".format(base, count))
    return anchors


def _links(path: Path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        yield target


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_arrives(document):
    dead = []
    for target in _links(document):
        file_part, _, anchor = target.partition("#")
        destination = (document.parent / file_part).resolve() if file_part else document
        if not destination.exists():
            dead.append("{} (no such file)".format(target))
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            dead.append("{} (no such heading)".format(target))
    assert dead == [], "dead links in {}".format(document.relative_to(REPO))


def test_the_readme_opening_screen_says_what_it_is_the_two_commands_and_where_to_go():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    opening = readme[:60]
    text = "\n".join(opening)
    assert "ServiceNow incidents" in text
    assert "./dev simulate --fast" in text and "./dev test" in text
    # Where next, for each kind of reader, within the opening screen.
    for where in ("docs/cli.md", "docs/raspberry-pi.md", "deploy/README.md", "docs/guarantees.md"):
        assert where in text, where
    for reader in ("Greengrass V2", "Greengrass V1", "without Greengrass"):
        assert reader in text, reader
