"""The group's documents as the deploy tooling generates them, for the runtimes' stand-ins.

``deploy v2 plan`` writes each component's recipe and ``deployment.json``; ``deploy
plan`` the V1 function, resource and subscription definitions. The stand-ins of the
runtimes load exactly those (``FakeNucleus.deploy``, ``V1CoreStandIn(group=...)``), so
the functions under test run with the access control and the subscription table a
deployment gives them, not with a test's idea of it. The documents come from the same
functions those commands call (``deploy.v2.plan.build_v2_plan``,
``deploy.definitions.build_documents``) for the default topology with a test's
``--env`` variables and thing name; the functions' zips are not built (no document the
stand-ins read depends on them).

The tooling needs Python 3.11 and botocore. Under the device tests' Python 3.8 this
module runs itself with the tooling's interpreter (the repository's ``.venv``, or
``$EDGE_AGENT_TOOLING_PYTHON``) and reads the documents as JSON.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from typing import Any, Dict, Mapping, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REGION = "us-east-1"
ACCOUNT = "123456789012"
THING = "edge-agent-core"
# Secrets Manager ends every secret's ARN with "-" and six random characters.
SECRET_ARN_PREFIX = "arn:aws:secretsmanager:{}:{}:secret:".format(REGION, ACCOUNT)
SECRET_SUFFIX = "-AbCdEf"

Environment = Optional[Mapping[str, Mapping[str, str]]]


def secret_arn(name: str) -> str:
    return SECRET_ARN_PREFIX + name + SECRET_SUFFIX


def v2_plan(
    environment: Environment = None, thing: str = THING, thing_group: str = ""
) -> Dict[str, Any]:
    """``{"deployment": ..., "recipes": {component: recipe}}`` as ``deploy v2 plan --env ...
    --thing-name THING [--thing-group GROUP]`` writes them (``FakeNucleus.deploy`` takes it)."""
    return copy.deepcopy(_documents(_key(environment, thing, thing_group))["v2"])


def v1_definitions(environment: Environment = None, thing: str = THING) -> Dict[str, Any]:
    """``{"function": ..., "resource": ..., "subscription": ...}``: the definitions' initial
    versions as ``deploy v1 plan --env ... --thing-name THING`` builds them."""
    return copy.deepcopy(_documents(_key(environment, thing))["v1"])


def component_name(plan: Mapping[str, Any], function_id: str) -> str:
    """The deployment's component for a topology function id (``<prefix>.<id>``)."""
    names = [n for n in plan["deployment"]["components"] if n.rsplit(".", 1)[-1] == function_id]
    if len(names) != 1:
        raise KeyError("no component for function {!r} in {}".format(function_id, names))
    return names[0]


def _key(environment: Environment, thing: str, thing_group: str = "") -> str:
    env = {f: dict(v) for f, v in (environment or {}).items()}
    request = {"environment": env, "thing": thing, "thing_group": thing_group}
    return json.dumps(request, sort_keys=True)


@functools.lru_cache(maxsize=None)
def _documents(key: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        return generate(json.loads(key))
    done = subprocess.run(
        [_tooling_python(), os.path.abspath(__file__), key],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError("generating the group's documents failed:\n" + done.stderr[-3000:])
    return json.loads(done.stdout)


def _tooling_python() -> str:
    chosen = os.environ.get("EDGE_AGENT_TOOLING_PYTHON") or os.path.join(
        REPO, ".venv", "bin", "python"
    )
    if not os.path.exists(chosen):
        raise RuntimeError(
            "the deploy tooling's Python 3.11 is needed to generate the group's documents: "
            "run ./dev test (it creates .venv) or set EDGE_AGENT_TOOLING_PYTHON"
        )
    return chosen


def generate(request: Mapping[str, Any]) -> Dict[str, Any]:
    """Both targets' documents for ``{"environment": ..., "thing": ..., "thing_group": ...}``
    (Python 3.11)."""
    from pathlib import Path

    from agent.topology import default_topology
    from deploy.definitions import build_documents
    from deploy.naming import target_from
    from deploy.package import PackageResult
    from deploy.v2.plan import V2Options, build_v2_plan

    topology = default_topology(environment=request["environment"])
    thing = request["thing"]
    secret = topology.secrets[0].secret_name
    target = target_from(
        topology,
        {},
        region=REGION,
        account=ACCOUNT,
        thing_name=thing,
        secret_arn_value=secret_arn(secret),
    )
    documents = build_documents(topology, target)
    packages = {
        spec.id: PackageResult(
            function_id=spec.id,
            path=Path("{}-v2.zip".format(spec.lambda_name)),
            sha256="",
            code_sha256="",
            size=0,
        )
        for spec in topology.functions
    }
    built = build_v2_plan(
        topology,
        region=REGION,
        account=ACCOUNT,
        secret_arns={s.id: target.secret_arn(topology, s.id) for s in topology.secrets},
        options=V2Options(thing_name=thing, thing_group=request.get("thing_group") or ""),
        secret_manager_version="2.2.3",
        shadow_manager_version="2.3.9",
        packages=packages,
    )
    return {
        "v1": {
            "function": documents.function,
            "resource": documents.resource,
            "subscription": documents.subscription,
        },
        "v2": {"deployment": built.deployment, "recipes": built.recipes},
    }


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    json.dump(generate(json.loads(sys.argv[1])), sys.stdout)
