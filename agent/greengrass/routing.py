"""The subscription table, as a Greengrass V1 core applies it. Pure logic, no I/O.

Loaded on the V1 function's start path (it tells an unrouted topic), so it follows the
cold-start rule (``agent/record.py``) and loads no topology classes at run time.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Tuple

    from ..topology import Subscription


def topic_matches(subject: str, topic: str) -> bool:
    """Whether a subscription ``subject`` (MQTT filter) matches a concrete ``topic``.

    ``+`` matches exactly one level; ``#`` matches any number of levels (including
    none) and is only valid as the last level.
    """
    filter_levels = subject.split("/")
    topic_levels = topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return i == len(filter_levels) - 1
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


def validate_subject(subject: str) -> None:
    """Raise ValueError for a filter the core would reject."""
    levels = subject.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' is only valid as the whole last level: {subject!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level: {subject!r}")


def route(subscriptions: Iterable[Subscription], source: str, topic: str) -> List[str]:
    """Targets that a message published by ``source`` on ``topic`` reaches, in table order.

    No matching subscription means no delivery. A target appears once even if
    several subscriptions match.
    """
    targets: List[str] = []
    for sub in subscriptions:
        if sub.source == source and topic_matches(sub.subject, topic) and sub.target not in targets:
            targets.append(sub.target)
    return targets


def targets_by_kind(targets: Iterable[str], cloud: str = "cloud") -> Tuple[bool, List[str]]:
    """Split targets into (goes to cloud, local function ids)."""
    targets = list(targets)
    return cloud in targets, [t for t in targets if t != cloud]


# -- a function's own routes, as its environment carries them (V1) ------------------------
def decode_routes(text: str) -> Optional[List[str]]:
    """The subjects :data:`agent.names.ROUTES_VARIABLE` lists (a JSON list, as
    ``GroupTopology.deployed_environment`` writes it), or None for another value."""
    try:
        subjects = json.loads(text)
    except ValueError:
        return None
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        return None
    return subjects


def routed(subjects: Iterable[str], topic: str) -> bool:
    """Whether any of ``subjects`` (a function's subscriptions) routes ``topic``."""
    return any(topic_matches(subject, topic) for subject in subjects)
