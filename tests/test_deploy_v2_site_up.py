"""deploy v2 up --site NAME --devices N through the command line: moto for IoT, IAM, S3,
Secrets Manager and STS; botocore's Stubber for greengrassv2 (moto has none), which checks
every request against the service model."""

from __future__ import annotations

import json
import stat

import boto3
import pytest
from test_deploy_support import (
    DEVICE_DISTS,
    make_site_packages,
    make_source_root,
    make_wheelhouse,
    no_aws_credentials,
)
from test_deploy_v2_up import REGION, V2Setup, aws  # noqa: F401 (aws is a fixture)

import deploy.commands
from deploy.cli import main
from deploy.site import BRIDGE, BROKER, CLIENT_AUTH, IP_DETECTOR
from deploy.validation import validation_errors

SITE = "floor3"
DEVICES = 101  # two association batches: the API takes at most 100 Pis a call
PIS = ["{}-pi-{:04d}".format(SITE, i + 1) for i in range(DEVICES)]
CORE = "edge-agent-site-{}-core".format(SITE)
CLIENT_COMPONENTS = (CLIENT_AUTH, BROKER, BRIDGE, IP_DETECTOR)


class Site(V2Setup):
    """v2 up --site through main(), its greengrassv2 calls answered by the Stubber."""

    def __init__(self, tmp_path, monkeypatch) -> None:
        super().__init__(tmp_path)
        real = deploy.commands._api

        def api(args, state, out):
            made = real(args, state, out)
            made._clients["greengrassv2"] = self.client
            return made

        monkeypatch.setattr(deploy.commands, "_api", api)

    def run(self, capsys, *extra):
        with self.stub:
            code = main(
                ["v2", "up", "--bucket", "artifacts", "--region", REGION, "--no-wait"]
                + ["--source-root", str(self.src), "--site-packages", str(self.site)]
                + ["--wheelhouse", str(self.wheelhouse), "--no-index"]
                + ["--package-dir", str(self.tmp / "pkg"), "--certs-dir", str(self.certs)]
                + ["--state", str(self.state_path), "--component-version", "1.0.0"]
                + ["--site", SITE, "--devices", str(DEVICES)]
                + list(extra)
            )
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def expect_client_component_versions(self):
        for name in CLIENT_COMPONENTS:
            self.stub.add_response(
                "list_component_versions",
                {
                    "componentVersions": [
                        {"componentName": name, "componentVersion": "2.4.0", "arn": "x"},
                        {"componentName": name, "componentVersion": "2.10.1", "arn": "y"},
                    ]
                },
                {"arn": "arn:aws:greengrass:us-east-1:aws:components:" + name},
            )

    def expect_associated(self, *pages):
        """ListClientDevicesAssociatedWithCoreDevice answering ``pages`` (lists of Pis)."""
        for n, page in enumerate(pages):
            # the model's list has at least one entry: none associated omits it
            response = {"associatedClientDevices": [{"thingName": d} for d in page]} if page else {}
            params = {"coreDeviceThingName": CORE}
            if n + 1 < len(pages):
                response["nextToken"] = "page-{}".format(n + 2)
            if n:
                params["nextToken"] = "page-{}".format(n + 1)
            self.stub.add_response(
                "list_client_devices_associated_with_core_device", response, params
            )

    def expect_associate(self, batch):
        self.stub.add_response(
            "batch_associate_client_device_with_core_device",
            {"errorEntries": []},
            {"coreDeviceThingName": CORE, "entries": [{"thingName": d} for d in batch]},
        )

    def expect_plan_versions(self):
        self.expect_secret_manager_versions()
        self.expect_client_component_versions()


@pytest.fixture
def site(aws, tmp_path, monkeypatch):  # noqa: F811 (aws is the fixture imported above)
    import deploy.awsapi

    monkeypatch.setattr(deploy.awsapi, "_sleep", lambda s: None)
    return Site(tmp_path, monkeypatch)


def things_and_certificates():
    iot = boto3.client("iot", region_name=REGION)
    things = [t["thingName"] for t in iot.list_things(maxResults=250)["things"]]
    certs = iot.list_certificates(pageSize=250)["certificates"]
    return things, certs


def test_first_run_creates_everything_once_and_a_second_run_creates_nothing(site, capsys):
    site.expect_plan_versions()
    site.expect_associated([])
    site.expect_associate(PIS[:100])
    site.expect_associate(PIS[100:])
    site.expect_new_components()
    site.expect_deployment()
    code, out, err = site.run(capsys)
    site.stub.assert_no_pending_responses()
    assert code == 0, err
    iot = boto3.client("iot", region_name=REGION)
    things, certs = things_and_certificates()
    assert sorted(things) == sorted(PIS + [CORE])
    assert len(certs) == DEVICES + 1 and {c["status"] for c in certs} == {"ACTIVE"}
    # each Pi: its own certificate, the Pis' policy on it, its key on disk for the Pi only
    for pi in (PIS[0], PIS[-1]):
        (principal,) = iot.list_thing_principals(thingName=pi)["principals"]
        policies = iot.list_attached_policies(target=principal)["policies"]
        assert [p["policyName"] for p in policies] == ["SiteSensorPolicy"]
        key = site.certs / "pis" / pi / "private.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() not in out + err
    policy = json.loads(iot.get_policy(policyName="SiteSensorPolicy")["policyDocument"])
    assert {s["Action"] for s in policy["Statement"]} == {"iot:Connect", "greengrass:Discover"}
    # the core in the site's thing group, the deployment to that group with the client devices
    group = iot.describe_thing_group(thingGroupName=SITE + "-gateways")
    members = iot.list_things_in_thing_group(thingGroupName=SITE + "-gateways")["things"]
    assert members == [CORE]
    (deployment,) = site.deployments
    assert validation_errors("greengrassv2", "CreateDeployment", deployment) == []
    assert deployment["targetArn"] == group["thingGroupArn"]
    for name in CLIENT_COMPONENTS:
        assert deployment["components"][name]["componentVersion"] == "2.10.1"
    assert deployment["iotJobConfiguration"]["jobExecutionsRolloutConfig"] == {
        "maximumPerMinute": 10
    }
    assert "floor3-pi-*" in deployment["components"][CLIENT_AUTH]["configurationUpdate"]["merge"]

    # again, nothing changed: every resource is found, nothing created or associated
    site.expect_plan_versions()
    site.expect_associated(PIS[:60], PIS[60:])
    site.expect_existing_components()
    code, out, err = site.run(capsys)
    site.stub.assert_no_pending_responses()
    assert code == 0, err
    assert "v2 up: nothing changed" in out
    assert things_and_certificates()[0] == things
    assert len(things_and_certificates()[1]) == DEVICES + 1
    assert len(site.deployments) == 1


def test_a_refused_call_stops_with_one_line_naming_it_and_a_rerun_completes(site, capsys):
    site.expect_plan_versions()
    site.expect_associated([])
    site.expect_associate(PIS[:100])
    site.stub.add_client_error(
        "batch_associate_client_device_with_core_device",
        "AccessDeniedException",
        "User is not authorized to perform greengrass:BatchAssociateClientDeviceWithCoreDevice",
        http_status_code=403,
        expected_params={"coreDeviceThingName": CORE, "entries": [{"thingName": PIS[100]}]},
    )
    code, out, err = site.run(capsys)
    site.stub.assert_no_pending_responses()
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert lines == [
        "error: AWS BatchAssociateClientDeviceWithCoreDevice failed: AccessDeniedException: "
        "User is not authorized to perform greengrass:BatchAssociateClientDeviceWithCoreDevice"
    ]
    assert site.deployments == []  # it stopped there

    # the re-run associates the one Pi left and deploys; nothing made twice
    site.expect_plan_versions()
    site.expect_associated(PIS[:100])
    site.expect_associate(PIS[100:])
    site.expect_new_components()
    site.expect_deployment()
    code, out, err = site.run(capsys)
    site.stub.assert_no_pending_responses()
    assert code == 0, err
    things, certs = things_and_certificates()
    assert sorted(things) == sorted(PIS + [CORE]) and len(certs) == DEVICES + 1
    assert len(site.deployments) == 1


def test_a_pi_refused_by_the_association_is_named(site, capsys):
    site.expect_plan_versions()
    site.expect_associated(PIS[1:])  # every Pi but the first is associated already
    site.stub.add_response(
        "batch_associate_client_device_with_core_device",
        {"errorEntries": [{"thingName": PIS[0], "code": "InvalidThing", "message": "gone"}]},
        {"coreDeviceThingName": CORE, "entries": [{"thingName": PIS[0]}]},
    )
    code, out, err = site.run(capsys)
    assert code != 0
    assert "refused 1 of 1 Pis, first floor3-pi-0001: InvalidThing gone" in err


def test_dry_run_lists_every_call_in_order_and_makes_none(tmp_path, capsys, monkeypatch):
    no_aws_credentials(monkeypatch, tmp_path)
    code = main(
        ["v2", "up", "--dry-run", "--bucket", "artifacts", "--region", REGION]
        + ["--source-root", str(make_source_root(tmp_path / "src"))]
        + ["--site-packages", str(make_site_packages(tmp_path / "site", DEVICE_DISTS))]
        + ["--wheelhouse", str(make_wheelhouse(tmp_path / "wheels")), "--no-index"]
        + ["--package-dir", str(tmp_path / "pkg"), "--certs-dir", str(tmp_path / "certs")]
        + ["--state", str(tmp_path / "state.json"), "--site", "lab", "--devices", "3"]
    )
    out = capsys.readouterr().out
    assert code == 0
    calls = [line.split("[dry-run] ", 1)[1] for line in out.splitlines() if "[dry-run] " in line]
    expected = [
        "iot.CreateThing thingName=edge-agent-site-lab-core",
        "iot.CreateThingGroup thingGroupName=lab-gateways",
        "iot.AddThingToThingGroup thingGroupName=lab-gateways thingName=edge-agent-site-lab-core",
        "greengrassv2.ListComponentVersions arn=arn:aws:greengrass:us-east-1:aws:components:"
        + CLIENT_AUTH,
        "iot.CreatePolicy policyName=SiteSensorPolicy",
        "iot.CreateThing thingName=lab-pi-0001",
        "iot.AttachThingPrincipal thingName=lab-pi-0001",
        "iot.CreateThing thingName=lab-pi-0003",
        "iot.AttachThingPrincipal thingName=lab-pi-0003",
        "greengrassv2.BatchAssociateClientDeviceWithCoreDevice "
        "coreDeviceThingName=edge-agent-site-lab-core",
        "greengrassv2.CreateComponentVersion",
        "greengrassv2.CreateDeployment",
    ]
    position = 0
    for call in expected:
        found = [i for i, c in enumerate(calls) if c.startswith(call) and i >= position]
        assert found, "{} not after {}".format(call, calls[position - 1] if position else "start")
        position = found[0] + 1
    (associate,) = [c for c in calls if "BatchAssociate" in c]
    assert "lab-pi-0001" in associate and "lab-pi-0003" in associate
    (deployment,) = [c for c in calls if c.startswith("greengrassv2.CreateDeployment")]
    assert "thinggroup/lab-gateways" in deployment
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "certs").exists()
