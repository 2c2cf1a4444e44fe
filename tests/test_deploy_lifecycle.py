"""``deploy`` by target, V2 first; the old names as aliases; the V1 path honest about its end.

AWS ended Greengrass V1 on 2026-10-07, and AWS Lambda blocks creating python3.8 functions
since 2025-02-28: every V1 command says so before anything else, and the first V1 refusal
from AWS is one line naming the V2 command, not a stack of errors.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from test_deploy_support import (
    DEVICE_DISTS,
    STATE_DIR,
    WireFaults,
    fake_aws,
    make_site_packages,
    make_source_root,
    make_wheelhouse,
)

import deploy.cli
from deploy.awsapi import Api
from deploy.cli import main
from deploy.lifecycle import canonical_argv

NOTICE = "AWS ended Greengrass V1 on 2026-10-07"
# What AWS Lambda answers a CreateFunction with a blocked runtime.
LAMBDA_REFUSAL = (
    "The runtime parameter of python3.8 is no longer supported for creating or updating AWS "
    "Lambda functions. We recommend you use a supported runtime while creating or upgrading "
    "functions."
)


@pytest.fixture
def aws(monkeypatch):
    fake_aws(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def v1_up(tmp_path, capsys):
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps({"username": "edge", "password": "pw-lifecycle"}))
    secret.chmod(0o600)
    argv = ["v1", "up", "--state", str(tmp_path / "state.json"), "--state-dir", STATE_DIR]
    argv += ["--source-root", str(src), "--site-packages", str(site), "--no-wait"]
    argv += ["--package-dir", str(tmp_path / "pkg"), "--certs-dir", str(tmp_path / "certs")]
    argv += ["--create-secret", "--secret-file", str(secret)]

    def run(*extra: str):
        code = main(argv + list(extra))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_help_lists_v2_before_v1_and_names_the_old_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    listing = text[text.index("COMMAND\n") :]
    assert listing.index("    v2 ") < listing.index("    v1 ") < listing.index("    set ")
    assert "ended 2026-10-07" in listing
    assert "v2-up = v2 up" in " ".join(text.split()) and "plan = v1 plan" in text
    assert main(["v2", "--help"]) == 0
    v2_help = capsys.readouterr().out
    for command in ("plan", "up", "status", "destroy", "package"):
        assert "    {} ".format(command) in v2_help


@pytest.mark.parametrize(
    "old,new",
    [
        (["plan"], ["v1", "plan"]),
        (["up", "--dry-run"], ["v1", "up", "--dry-run"]),
        (["status"], ["v1", "status"]),
        (["reset"], ["v1", "reset"]),
        (["destroy"], ["v1", "destroy"]),
        (["render-config"], ["v1", "render-config"]),
        (["package"], ["v1", "package"]),
        (["package", "--runtime", "v2", "--out", "x"], ["v2", "package", "--out", "x"]),
        (["package", "--runtime=v1"], ["v1", "package"]),
        (["v2-plan", "--out", "x"], ["v2", "plan", "--out", "x"]),
        (["v2-up"], ["v2", "up"]),
        (["v2-status"], ["v2", "status"]),
        (["v2-destroy", "--yes"], ["v2", "destroy", "--yes"]),
    ],
)
def test_old_names_are_aliases_that_say_the_new_name(old, new):
    argv, note = canonical_argv(old)
    assert argv == new
    assert note is not None and note.count("\n") == 0
    assert note.startswith("note: 'deploy {}".format(old[0]))
    assert "is now 'deploy {} {}'".format(*new[:2]) in note
    assert canonical_argv(new) == (new, None)  # the new names pass through untouched


def test_an_old_name_runs_the_same_command_and_says_so_in_one_line(tmp_path, capsys):
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    wheels = make_wheelhouse(tmp_path / "wheels")

    def plan(*command: str, out: str) -> int:
        return main(
            [*command, "--out", str(tmp_path / out), "--state", str(tmp_path / "none.json")]
            + ["--source-root", str(src), "--site-packages", str(site)]
            + ["--package-dir", str(tmp_path / ("pkg-" + out))]
            + ["--wheelhouse", str(wheels), "--no-index"]
        )

    assert plan("v2-plan", out="old") == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "note: 'deploy v2-plan' is now 'deploy v2 plan' (the old name still works)"
    )
    assert NOTICE not in err  # V2 is not V1
    assert plan("v2", "plan", out="new") == 0
    assert "is now" not in capsys.readouterr().err
    for path in (tmp_path / "new").iterdir():
        assert (tmp_path / "old" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    "argv,instead",
    [
        (["v1", "plan", "--out", "{tmp}/plan"], "deploy v2 plan"),
        (["v1", "package", "--out", "{tmp}/pkg", "--function", "nosuch"], "deploy v2 package"),
        (["v1", "status", "--state", "{tmp}/missing.json"], "deploy v2 status"),
        (["v1", "render-config", "--state", "{tmp}/missing.json"], "deploy v2 plan"),
    ],
)
def test_every_v1_command_first_says_v1_ended_and_names_the_v2_command(
    argv, instead, tmp_path, capsys
):
    code = main([arg.format(tmp=tmp_path) for arg in argv])
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert code == (0 if argv[1] == "plan" else 1) and "Traceback" not in err
    assert NOTICE in first and "python3.8" in first
    assert "deprecated 2024-10-14" in first and "creation blocked from 2025-02-28" in first
    assert "'{}'".format(instead) in first


def test_the_notice_comes_before_any_aws_call_and_the_first_call_asks_for_v1(
    aws, v1_up, monkeypatch
):
    events = []
    monkeypatch.setattr(deploy.cli, "_err", lambda text: events.append(("stderr", text)))
    real_call = Api.call

    def call(self, service, operation, *args, **kwargs):
        events.append(("aws", "{}.{}".format(service, operation)))
        return real_call(self, service, operation, *args, **kwargs)

    monkeypatch.setattr(Api, "call", call)
    code, _out, _err = v1_up()
    assert code == 0
    assert events[0][0] == "stderr" and NOTICE in events[0][1]
    assert events[1] == ("aws", "greengrass.ListGroups")


def test_an_account_without_v1_gets_one_line_and_nothing_is_created(aws, v1_up, monkeypatch):
    wire = WireFaults(monkeypatch).fail(
        "ListGroups", "AccessDeniedException", "Greengrass V1 is not available", status=403
    )
    code, out, err = v1_up()
    assert code == 1 and wire.attempts == ["ListGroups"]
    errors = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert errors == [
        "error: AWS refused greengrass.ListGroups (AccessDeniedException: Greengrass V1 is not "
        "available): this account has no Greengrass V1 any more (ended 2026-10-07) or cannot "
        "create python3.8 functions (blocked from 2025-02-28); use 'deploy v2 up'"
    ]
    assert "Traceback" not in out + err
    assert boto3.client("iam").list_roles()["Roles"] == []  # it stopped before creating anything
    assert boto3.client("lambda").list_functions()["Functions"] == []


def test_lambda_refusing_python38_is_one_line_naming_v2(aws, v1_up, monkeypatch):
    WireFaults(monkeypatch).fail("CreateFunction", "InvalidParameterValueException", LAMBDA_REFUSAL)
    code, out, err = v1_up()
    assert code == 1
    errors = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: AWS refused lambda.CreateFunction (InvalidParameterValueException: The runtime "
        "parameter of python3.8 is no longer supported"
    )
    assert errors[0].endswith("use 'deploy v2 up'")
    assert "Traceback" not in out + err


def test_rejected_credentials_are_not_mistaken_for_the_end_of_v1(aws, v1_up, monkeypatch):
    WireFaults(monkeypatch).fail("ListGroups", "UnrecognizedClientException", "bad token")
    code, _out, err = v1_up()
    assert code == 1 and "AWS rejected the credentials" in err and "refused" not in err
