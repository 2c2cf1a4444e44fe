"""certs-example/: the config.json template, render-config, and no key material committed."""

from __future__ import annotations

import json

from test_deploy_support import REPO

from deploy.cli import main
from deploy.coreconfig import template_text

EXAMPLE = REPO / "certs-example"
STATE = {
    "format": 1,
    "region": "eu-west-1",
    "account": "123456789012",
    "iot_endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com",
    "thing": {
        "name": "edge-agent-core",
        "arn": "arn:aws:iot:eu-west-1:123456789012:thing/edge-agent-core",
    },
    "certificate": {
        "arn": "arn:aws:iot:eu-west-1:123456789012:cert/" + "ab" * 32,
        "id": "ab" * 32,
        "cert_file": "abababab.cert.pem",
        "key_file": "abababab.private.key",
    },
    "run_as": {"uid": 1000, "gid": 1000, "root": False},
}


def test_template_is_what_render_config_produces():
    text = (EXAMPLE / "config.json.template").read_text()
    assert text == template_text()
    config = json.loads(text)
    assert config["runtime"] == {"cgroup": {"useSystemd": "yes"}}
    assert "allowFunctionsToRunAsRoot" not in text
    assert config["coreThing"]["thingArn"] == "{{THING_ARN}}"
    assert config["coreThing"]["caPath"] == "AmazonRootCA1.pem"


def test_render_config_from_state(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text(json.dumps(STATE))
    out = tmp_path / "config.json"
    assert main(["v1", "render-config", "--state", str(state), "--out", str(out)]) == 0
    config = json.loads(out.read_text())
    core = config["coreThing"]
    assert core["thingArn"] == STATE["thing"]["arn"]
    assert core["iotHost"] == STATE["iot_endpoint"]
    assert core["ggHost"] == "greengrass-ats.iot.eu-west-1.amazonaws.com"
    assert core["certPath"] == "abababab.cert.pem" and core["keyPath"] == "abababab.private.key"
    principals = config["crypto"]["principals"]
    assert principals["SecretsManager"]["privateKeyPath"] == (
        "file:///greengrass/certs/abababab.private.key"
    )
    assert "allowFunctionsToRunAsRoot" not in config["runtime"]
    assert "{{" not in out.read_text()


def test_render_config_allows_root_only_when_deployed_as_root(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text(json.dumps(dict(STATE, run_as={"uid": 0, "gid": 0, "root": True})))
    assert main(["v1", "render-config", "--state", str(state)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["runtime"]["allowFunctionsToRunAsRoot"] == "yes"
    assert "--run-as-root" in captured.err


def test_render_config_without_state_is_a_clear_error(tmp_path, capsys):
    assert main(["v1", "render-config", "--state", str(tmp_path / "missing.json")]) == 1
    assert "run python -m deploy v1 up first" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"format": 1, "region": "eu-west-1"}))
    assert main(["v1", "render-config", "--state", str(partial)]) == 1
    assert "thing ARN" in capsys.readouterr().err


def test_no_key_material_in_certs_example():
    mine = [EXAMPLE / "README.md", EXAMPLE / "config.json.template"]
    for path in mine:
        text = path.read_text()
        assert "-----BEGIN" not in text and "PRIVATE KEY-----" not in text
    readme = mine[0].read_text()
    for where in (
        "/greengrass/certs/",
        "/greengrass/config/",
        "AmazonRootCA1.pem",
        "render-config --state out/state.json",
        "allowFunctionsToRunAsRoot",
        "i2c,video,input",
    ):
        assert where in readme


def test_cli_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert "usage: deploy" in capsys.readouterr().out  # not sys.argv[0]
    assert main(["no-such-command"]) == 2
    assert main([]) == 2
