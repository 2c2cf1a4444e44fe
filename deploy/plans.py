"""``v1 plan`` and ``v2 plan``: every document ``v1 up``/``v2 up`` would send, written for review.

Both build their documents from the topology and a :class:`~deploy.naming.Target`
(options, else the state file, else placeholders), validate them against
botocore's service models, and write one JSON file per document plus
``plan.json`` (hashes, placeholders used, the equivalent AWS CLI commands); ``v2 plan``
also copies the artifact files its recipes name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

from agent.topology import GroupTopology

from .definitions import CREATE_OPERATIONS, build_documents, content_hash, validate_documents
from .naming import Names, Target, partition_for
from .roles import greengrass_trust_policy, lambda_trust_policy
from .validation import raise_violations, trust_policy_violations


@dataclass
class Plan:
    target: Target
    files: Dict[str, Any] = field(default_factory=dict)  # file name -> JSON document or text
    artifacts: Dict[str, Path] = field(default_factory=dict)  # file name -> file to copy
    commands: List[str] = field(default_factory=list)
    placeholders: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def v1_plan(topology: GroupTopology, target: Target) -> Plan:
    """The four definition documents and the core's IoT policy."""
    documents = build_documents(topology, target)
    names = Names.for_topology(topology, target.thing_name)
    validate_documents(documents, names.policy)
    plan = Plan(target, placeholders=list(target.placeholders))
    for kind in CREATE_OPERATIONS:
        file_name = "{}-definition.json".format(kind)
        plan.files[file_name] = documents.definition(kind)
        plan.commands.append(
            "aws greengrass create-{}-definition --name {} --initial-version file://{}".format(
                kind, names.definition(kind), file_name
            )
        )
    plan.files["iot-policy.json"] = documents.policy
    plan.commands.append(
        "aws iot create-policy --policy-name {} --policy-document file://iot-policy.json".format(
            names.policy
        )
    )
    partition = partition_for(target.region)
    roles = {
        names.lambda_role: lambda_trust_policy(target.account),
        names.group_role: greengrass_trust_policy(partition, target.region, target.account),
        names.service_role: greengrass_trust_policy(partition, target.region, target.account),
    }
    for role, trust in roles.items():
        raise_violations(trust_policy_violations(role, trust, target.account), "the role")
        file_name = "{}-trust.json".format(role)
        plan.files[file_name] = trust
        plan.commands.append(
            "aws iam create-role --role-name {} --assume-role-policy-document file://{}".format(
                role, file_name
            )
        )
    plan.notes.append(
        "checked against AWS's documented Greengrass V1 rules and botocore's greengrass "
        "and iot service models"
    )
    return plan


def write_plan(out_dir: Path, plan: Plan, out: Callable[[str], None]) -> None:
    """Write every document and ``plan.json``; say what was written and what is a placeholder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes: Dict[str, str] = {}
    for name, document in plan.files.items():
        path = out_dir / name
        if isinstance(document, str):
            path.write_text(document)
        else:
            path.write_text(json.dumps(document, indent=2) + "\n")
        hashes[name] = content_hash(document)
    artifacts: Dict[str, str] = {}
    for name, source in sorted(plan.artifacts.items()):
        data = Path(source).read_bytes()
        (out_dir / name).write_bytes(data)
        artifacts[name] = "sha256:" + hashlib.sha256(data).hexdigest()
    summary = {
        "region": plan.target.region,
        "account": plan.target.account,
        "thing": plan.target.thing_name,
        "placeholders": plan.placeholders,
        "files": hashes,
        "commands": plan.commands,
    }
    if artifacts:
        summary["artifacts"] = artifacts  # what the recipes' URIs name, as uploaded
    (out_dir / "plan.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name in sorted(list(plan.files) + list(plan.artifacts) + ["plan.json"]):
        out("wrote {}".format(out_dir / name))
    for note in plan.notes:
        out(note)
    if plan.placeholders:
        out(
            "placeholders used (pass options or run up first): {}".format(
                ", ".join(plan.placeholders)
            )
        )
