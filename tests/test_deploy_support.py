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
# Where the tests keep the functions' state volume: explicit, a path Greengrass V1 accepts
# (never under /sys, /dev or /var), whatever agent.topology's default is.
STATE_DIR = "/opt/edge-agent/state"
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


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kwargs):
        yield self._data


class WireFaults:
    """moto answers chosen operations with an HTTP error, *below* botocore's retry handler.

    moto serves every request from botocore's ``before-send`` hook; this wraps
    it, so botocore's own retry logic sees a real error response: its standard
    mode decides what to retry and how long to sleep. Its sleeps are recorded
    instead of slept.
    """

    def __init__(self, monkeypatch) -> None:
        import types

        import botocore.endpoint
        from moto.core.botocore_stubber import BotocoreStubber

        self.sleeps = []
        self.attempts = []
        self._rules = []  # [operation, status, code, message, times left]
        monkeypatch.setattr(
            botocore.endpoint, "time", types.SimpleNamespace(sleep=self.sleeps.append)
        )
        serve = BotocoreStubber.__call__

        def answer(stubber, event_name, request, **kwargs):
            fault = self._fault(event_name, request)
            return fault if fault is not None else serve(stubber, event_name, request, **kwargs)

        monkeypatch.setattr(BotocoreStubber, "__call__", answer)

    def fail(self, operation: str, code: str, message: str, times=None, status: int = 400):
        """``operation`` answers ``status``/``code`` ``times`` times (None: always)."""
        self._rules.append([operation, status, code, message, times])
        return self

    def _fault(self, event_name: str, request):
        from botocore.awsrequest import AWSResponse

        operation = event_name.rsplit(".", 1)[-1]
        for rule in self._rules:
            name, status, code, message, times = rule
            if name != operation:
                continue
            self.attempts.append(operation)
            if times is not None:
                if times <= 0:
                    return None
                rule[4] = times - 1
            body = json.dumps({"__type": code, "message": message, "Message": message})
            headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
            return AWSResponse(request.url, status, headers, _Body(body.encode("utf-8")))
        return None


REQUIRE_PY38 = "EDGE_AGENT_REQUIRE_PY38"


def python38() -> str:
    """The Python 3.8 interpreter the V1 zips are tested with.

    Missing: a skip on a laptop, a failure where ``EDGE_AGENT_REQUIRE_PY38=1``
    (or ``CI``) says the machine must have one, so CI cannot pass silently
    without ever running the zips on 3.8.
    """
    import os

    import pytest

    from deploy.vendoring import find_python

    found = find_python("3.8")
    if found:
        return found
    message = (
        "no Python 3.8 interpreter: set PYTHON38=/path/to/python3.8 or install 3.8 "
        "(pyenv install 3.8)"
    )
    if os.environ.get(REQUIRE_PY38) == "1" or os.environ.get("CI"):
        pytest.fail("{} ({}/CI require it here)".format(message, REQUIRE_PY38), pytrace=False)
    pytest.skip(message)


# What the functions need on a core, as small fake distributions that admit Python 3.8
# (so deploy tests need neither pip nor the network).
DEVICE_DISTS = [
    {
        "name": "requests",
        "version": "2.32.4",
        "requires_python": ">=3.8",
        "requires": ["urllib3<3,>=1.21.1", "idna<4,>=2.5"],
        "files": {"requests/__init__.py": "# requests\n"},
    },
    {"name": "urllib3", "version": "2.2.3", "files": {"urllib3/__init__.py": ""}},
    {"name": "idna", "version": "3.10", "files": {"idna/__init__.py": ""}},
    {
        "name": "greengrasssdk",
        "version": "1.6.1",
        "requires": ["cbor2 (~=5.4.2)"],
        "files": {"greengrasssdk/__init__.py": ""},
    },
    {"name": "cbor2", "version": "5.4.6", "files": {"cbor2/__init__.py": ""}},
    {"name": "smbus2", "version": "0.6.1", "files": {"smbus2/__init__.py": ""}},
    {
        "name": "awsiotsdk",
        "version": "1.21.0",
        "requires": ["awscrt"],
        "files": {"awsiot/__init__.py": ""},
    },
    {
        "name": "awscrt",
        "version": "0.19.19",
        "files": {"awscrt/__init__.py": "", "_awscrt.abi3.so": "ELF"},
    },
]


def test_topology(**kwargs):
    """The default topology with its state volume at STATE_DIR (explicit, V1-valid)."""
    from agent.topology import default_topology
    from deploy.commands import with_state_dir

    return with_state_dir(default_topology(**kwargs), STATE_DIR)


test_topology.__test__ = False  # a helper, not a test


# --- wheels ---------------------------------------------------------------------------


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    requires: Iterable[str] = (),
    files: Optional[Dict[str, str]] = None,
) -> Path:
    """A real (if tiny) wheel file pip can resolve and install: PEP 427 name and layout."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = "{}-{}.dist-info".format(dist, version)
    contents = dict(
        files or {"{}/__init__.py".format(dist): "__version__ = {!r}\n".format(version)}
    )
    contents[info + "/METADATA"] = (
        "\n".join(
            ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
            + ["Requires-Dist: " + r for r in requires]
        )
        + "\n"
    )
    contents[info + "/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: edge-agent-tests\nRoot-Is-Purelib: {}\n".format(
            "true" if tag.endswith("-any") else "false"
        )
        + "".join("Tag: {}\n".format(t) for t in _expand_tag(tag))
    )
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append("{},sha256={},{}".format(path, digest.decode(), len(text.encode())))
    record.append(info + "/RECORD,,")
    contents[info + "/RECORD"] = "\n".join(record) + "\n"
    path = folder / "{}-{}-{}.whl".format(dist, version, tag)
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in sorted(contents.items()):
            archive.writestr(member, text)
    return path


def _expand_tag(tag: str):
    python, abi, platforms = tag.split("-")
    return ["{}-{}-{}".format(python, abi, p) for p in platforms.split(".")]


# What the V2 components need compiled, for the architectures PyPI has wheels for: the
# same names, versions and tags as PyPI's (awscrt's abi3 manylinux wheels).
AWSCRT_TAGS = {
    "aarch64": "cp311-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64",
    "amd64": "cp311-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64",
}


def make_wheelhouse(folder: Path, architectures=("aarch64", "amd64")) -> Path:
    """awsiotsdk (pure Python) and an awscrt wheel per architecture, as PyPI has them."""
    make_wheel(
        folder,
        "awsiotsdk",
        "1.21.0",
        requires=["awscrt==0.19.19"],
        files={"awsiot/__init__.py": ""},
    )
    for architecture in architectures:
        make_wheel(folder, "awscrt", "0.19.19", AWSCRT_TAGS[architecture])
    return folder
