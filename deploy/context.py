"""What every step of a deploy run shares: the AWS API, the state file, the output, the names.

The V1 and V2 deployers are made of one class per AWS service they drive
(IAM roles, Lambda, IoT, Greengrass, ...). Each gets this context instead of
a back-reference to a deployer, so a step only sees what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, MutableMapping

from botocore.exceptions import ClientError

from .awsapi import NOT_FOUND_CODES, Api, error_code
from .errors import DeployError
from .naming import PLACEHOLDER_ACCOUNT, Names, partition_for
from .state import State


@dataclass
class RunContext:
    api: Api
    state: State
    names: Names
    out: Callable[[str], None] = print
    account: str = ""
    changes: List[str] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.api.region

    @property
    def partition(self) -> str:
        return partition_for(self.api.region)

    def note(self, text: str) -> None:
        """A change: printed, and remembered for the 'nothing changed' verdict."""
        self.changes.append(text)
        self.out(("(dry-run) would be: " if self.api.dry_run else "") + text)

    def delete_if_present(self, service: str, operation: str, params: Dict[str, Any]) -> None:
        """A delete that tolerates 'already gone'."""
        try:
            self.api.call(service, operation, params)
        except ClientError as exc:
            if error_code(exc) not in NOT_FOUND_CODES:
                raise
            self.out("  {}.{}: already gone".format(service, operation))

    def resolve_account(self, given_account: str = "") -> str:
        """The caller's account (in dry-run: the given one, the recorded one, or a placeholder).

        Refuses a state file written for another account or region.
        """
        recorded = self.state.get("region"), self.state.get("account")
        if self.api.dry_run:
            self.account = given_account or self.state.get("account") or PLACEHOLDER_ACCOUNT
            self.api.call("sts", "GetCallerIdentity", dry={"Account": self.account})
        else:
            self.account = self.api.call("sts", "GetCallerIdentity")["Account"]
        if recorded[0] and (recorded[0], recorded[1]) != (self.region, self.account):
            raise DeployError(
                "state file {} belongs to account {} in {}, not {} in {}".format(
                    self.state.path, recorded[1], recorded[0], self.account, self.region
                ),
                hint="use another --state file for another account or region",
            )
        self.state["region"] = self.region
        self.state["account"] = self.account
        return self.account


def section(record: MutableMapping[str, Any], key: str) -> Dict[str, Any]:
    """A nested dict of a state record, created on first use."""
    node = record.get(key)
    if node is None:
        node = record[key] = {}
    if not isinstance(node, dict):
        raise DeployError("state file: {!r} is not an object".format(key))
    return node


def state_entry(record: MutableMapping[str, Any], key: str) -> Dict[str, Any]:
    """What the state recorded under ``key`` (empty when nothing or not an object)."""
    node = record.get(key)
    return node if isinstance(node, dict) else {}
