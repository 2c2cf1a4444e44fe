"""Helpers shared by the tests/test_deploy_*.py files (this module holds no tests).

A throwaway project tree (agent/, functions/, pyproject.toml) and fake
site-packages let the deploy tests run without the real function modules
and independent of what happens to be installed.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Dict, Iterable, Optional

REPO = Path(__file__).resolve().parent.parent
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
}
CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)
# The two AWS managed policies up attaches; loading moto's full list takes seconds.
MANAGED_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSGreengrassResourceAccessRolePolicy")


def fake_aws(monkeypatch) -> None:
    """Fake credentials for moto, and only the managed policies we use."""
    import moto.iam.models as iam_models

    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    data = json.loads(iam_models.aws_managed_policies_data)
    small = {name: data[name] for name in MANAGED_POLICIES}
    monkeypatch.setattr(iam_models, "aws_managed_policies_data", json.dumps(small))


def no_aws_credentials(monkeypatch, tmp_path: Path) -> None:
    """No credentials anywhere: env, files, instance metadata."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def make_source_root(root: Path, extra_agent_files: Optional[Dict[str, str]] = None) -> Path:
    """agent/, functions/ and the real pyproject.toml, with trivial function modules."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    files = {
        "agent/__init__.py": '"""fake agent"""\n__version__ = "0.1.0"\n',
        "agent/topology.py": "# stands in for the real module\n",
        "agent/greengrass/__init__.py": "",
        "agent/greengrass/__pycache__/x.cpython-311.pyc": "junk",
        "agent/stale.pyc": "junk",
        "functions/__init__.py": "",
        "functions/sensor_function.py": textwrap.dedent(
            """\
            def function_handler(event, context):
                return "sensor"
            """
        ),
        "functions/anomaly_function.py": textwrap.dedent(
            """\
            def function_handler(event, context):
                return "anomaly"
            """
        ),
        "functions/__pycache__/sensor_function.cpython-311.pyc": "junk",
    }
    files.update(extra_agent_files or {})
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_site_packages(root: Path, dists: Iterable[dict]) -> Path:
    """A fake site-packages: each dist {name, version, requires, requires_python, files}."""
    root.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        name, version = dist["name"], dist.get("version", "1.0")
        info = root / "{}-{}.dist-info".format(name.replace("-", "_"), version)
        info.mkdir()
        lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
        if dist.get("requires_python"):
            lines.append("Requires-Python: " + dist["requires_python"])
        lines += ["Requires-Dist: " + r for r in dist.get("requires", [])]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        record = []
        for rel, text in dist.get("files", {}).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            record.append(rel + ",,")
        record.append("{}/METADATA,,".format(info.name))
        record.append("{}/RECORD,,".format(info.name))
        (info / "RECORD").write_text("\n".join(record) + "\n")
    return root
