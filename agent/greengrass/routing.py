"""The subscription table, as a Greengrass V1 core applies it. Pure logic, no I/O."""

from __future__ import annotations

from typing import Iterable, List, Tuple

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
