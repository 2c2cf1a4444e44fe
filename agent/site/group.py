"""One group of a site gateway: its members and what changed since its incident last heard.

A plain state class shared by the grouping of episodes (:mod:`.grouping`), what
its incident says (:mod:`.group_text`) and the silent group (:mod:`.silence`);
:meth:`Group.header` and :meth:`Group.from_header` are its row in the outbox.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..servicenow.incidents import correlation_id

# What is remembered about one device of a group.
Member = Dict[str, Any]


class Group:
    """One group: its members and what changed since its incident last heard."""

    def __init__(self, key: str, group_id: str, metric: str, bound: str, first_at: float) -> None:
        self.key = key
        self.group_id = group_id
        self.metric = metric
        self.bound = bound
        self.first_at = first_at
        self.opened_at: Optional[float] = None
        self.last_note_at: Optional[float] = None
        self.seq = 0  # actions made so far: the next action's key number
        self.previous: Optional[str] = None  # the previous group's correlation id
        self.changes: Dict[str, List[str]] = {"joined": [], "recovered": [], "worsened": []}
        self.members: Dict[str, Member] = {}

    @property
    def correlation_id(self) -> str:
        return correlation_id(self.group_id)

    def breaching(self) -> List[str]:
        return sorted(d for d, m in self.members.items() if m["state"] == "breach")

    def peak(self) -> Tuple[float, str]:
        """The worst peak of any member, and whose."""
        sign = 1.0 if self.bound == "upper" else -1.0
        device = min(self.members, key=lambda d: (-sign * self.members[d]["peak"], d))
        return self.members[device]["peak"], device

    def header(self) -> Dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "key",
                "group_id",
                "metric",
                "bound",
                "first_at",
                "opened_at",
                "last_note_at",
                "seq",
                "previous",
                "changes",
            )
        }

    @classmethod
    def from_header(cls, data: Mapping[str, Any]) -> Group:
        group = cls(data["key"], data["group_id"], data["metric"], data["bound"], data["first_at"])
        for k in ("opened_at", "last_note_at", "seq", "previous", "changes"):
            setattr(group, k, data[k])
        return group

    def _note_due_at(self, interval: float) -> Optional[float]:
        if self.opened_at is None or not any(self.changes.values()):
            return None
        return (self.last_note_at or self.opened_at) + interval
