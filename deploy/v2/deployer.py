"""``v2 up``, ``v2 status``, ``v2 destroy``: a Greengrass V2 core from the topology.

``v2 up``: the core's identity (``identity``), component versions
(``components``), one deployment to the thing or thing group, then the files the
Pi needs (``config.yaml`` and ``install-on-pi.sh`` beside the certificate) and
the wait for every core device that has connected. A changed variable is a new
deployment of the same component versions (configuration merge); a changed
recipe or code needs a new ``--component-version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

from botocore.exceptions import ClientError

from agent.topology import GroupTopology

from ..awsapi import Api, error_code
from ..context import RunContext, section, state_entry
from ..definitions import content_hash
from ..errors import DeployError, DeploymentFailed, DeploymentTimedOut
from ..naming import Names
from ..site import device_names
from ..state import State
from ..things import write_private
from ..v1.secrets import Secrets, read_secret_value
from .components import Components
from .core_documents import (
    GREENGRASS_ROOT,
    nucleus_config_yaml,
    pi_install_script,
    state_directories,
)
from .deployments import FAILED, DeploymentWatcher
from .identity import CoreDevice, CoreIdentity
from .plan import CHECK_SERVICENOW_NOTE, V2Options, build_v2_plan
from .recipes import SECRET_MANAGER, SHADOW_MANAGER
from .site_up import SitePis, site_deployment

CONFIG_FILE = "config.yaml"
INSTALL_SCRIPT = "install-on-pi.sh"
# CancelDeployment on a deployment that is done or already cancelled answers these.
NOT_CANCELLABLE = ("ConflictException", "ValidationException", "ResourceNotFoundException")


class V2Deployer:
    def __init__(
        self,
        api: Api,
        topology: GroupTopology,
        state: State,
        options: V2Options,
        out: Callable[[str], None] = print,
    ) -> None:
        self.topology = topology
        self.opts = options
        v2 = section(state, "v2")
        thing = options.thing_name or state_entry(v2, "thing").get("name", "")
        self.ctx = RunContext(api, state, Names.for_topology(topology, thing), out)
        self.record = v2
        self.identity = CoreIdentity(self.ctx, v2, options.certs_dir)
        self.components = Components(self.ctx, v2, options.timeout, options.poll_interval)
        self.watcher = DeploymentWatcher(self.ctx, options.timeout, options.poll_interval)
        self.secrets = Secrets(
            self.ctx, topology, lambda p: read_secret_value(p, out=out), greengrass_v1=False
        )

    # -- v2 up --------------------------------------------------------------------------

    def up(self) -> int:
        ctx, api, opts = self.ctx, self.ctx.api, self.opts
        if not opts.bucket:
            raise DeployError("v2 up needs --bucket for the component artifacts")
        ctx.resolve_account(opts.account)
        secret_arns = self.secrets.ensure(opts.create_secret, opts.secret_file)
        device = self.identity.ensure(
            self.topology,
            bucket=opts.bucket,
            artifact_prefix=opts.artifact_prefix,
            secret_arns=secret_arns,
            thing_group=opts.thing_group,
        )
        plan = build_v2_plan(
            self.topology,
            region=ctx.region,
            account=ctx.account,
            secret_arns=secret_arns,
            options=opts,
            secret_manager_version=self.components.public_component_version(
                SECRET_MANAGER, opts.secret_manager_version
            ),
            shadow_manager_version=self.components.public_component_version(
                SHADOW_MANAGER, opts.shadow_manager_version
            ),
            out=ctx.out,
        )
        if opts.site:
            plan.deployment = site_deployment(
                plan.deployment,
                opts.site,
                self.topology,
                per_minute=opts.rollout_per_minute,
                abort_percent=opts.abort_threshold,
                resolve=self.components.public_component_version,
            )
            pis = SitePis(
                ctx, self.record, opts.site, device_names(opts.site, opts.devices), opts.certs_dir
            )
            pis.ensure()
            pis.associate(device.thing)
        for spec in self.topology.functions:
            name = next(n for n in plan.recipes if n.endswith("." + spec.id))
            self.components.ensure(name, plan.recipes[name], plan.artifacts[name], opts.bucket)
        self._write_pi_files(device)
        digest = content_hash(plan.deployment)
        deployment = section(self.record, "deployment")
        target = plan.deployment["targetArn"]
        if deployment.get("hash") == digest and not opts.force_deploy:
            ctx.out(
                "v2 deployment: unchanged ({}); --force-deploy to deploy anyway".format(
                    deployment.get("id")
                )
            )
        else:
            response = api.call(
                "greengrassv2", "CreateDeployment", plan.deployment, dry={"deploymentId": "NEW"}
            )
            previous = [d for d in deployment.get("previous", []) + [deployment.get("id")] if d]
            deployment.clear()
            deployment.update(
                id=response["deploymentId"], hash=digest, target=target, previous=previous
            )
            ctx.state.save()
            ctx.note("v2 deployment {}: created for {}".format(response["deploymentId"], target))
            if opts.wait:
                self._wait(target, response["deploymentId"])
        if not ctx.changes:
            ctx.out("v2 up: nothing changed")
        ctx.out(CHECK_SERVICENOW_NOTE)
        return 0

    def _connected(self, thing: str) -> bool:
        """Whether the nucleus on ``thing`` has ever connected (it is a core device then)."""
        found = self.ctx.api.find(
            "greengrassv2",
            "GetCoreDevice",
            {"coreDeviceThingName": thing},
            dry={"coreDeviceThingName": thing, "status": "HEALTHY"},
        )
        return found is not None

    def _wait(self, target: str, deployment_id: str) -> None:
        """Wait for the core devices of ``target`` that have connected; none: say so."""
        thing = self.ctx.names.thing
        connected = self._connected(thing)
        if ":thing/" in target and not connected:
            self.ctx.out(
                "core device {} has not connected yet: install the nucleus on the Pi (above); "
                "it applies deployment {} when it connects "
                "(check with: python -m deploy v2 status)".format(thing, deployment_id)
            )
            return
        self.watcher.wait(target, deployment_id, [thing] if connected else [])

    def _write_pi_files(self, device: CoreDevice) -> None:
        """``config.yaml`` and ``install-on-pi.sh`` beside the certificate; say how to use them."""
        ctx = self.ctx
        config = nucleus_config_yaml(
            thing=device.thing,
            region=ctx.region,
            role_alias=device.role_alias,
            data_endpoint=device.data_endpoint,
            credentials_endpoint=device.credentials_endpoint,
            cert_file=device.cert_file,
            key_file=device.key_file,
            nucleus_version=self.opts.nucleus_version,
        )
        script = pi_install_script(
            cert_file=device.cert_file,
            key_file=device.key_file,
            run_as=self.opts.run_as(self.topology),
            state_dirs=state_directories(self.topology),
            nucleus_version=self.opts.nucleus_version,
        )
        directory = device.certs_dir
        if ctx.api.dry_run:
            ctx.out(
                "  [dry-run] would write {}/{} and {}".format(
                    directory, CONFIG_FILE, INSTALL_SCRIPT
                )
            )
        else:
            directory.mkdir(parents=True, exist_ok=True)
            write_private(directory / CONFIG_FILE, config)
            write_private(directory / INSTALL_SCRIPT, script)
        ctx.out(
            "core device {}: copy {}/ to the Pi and run there:  sudo sh {}\n"
            "  (it installs Java, the Sense HAT package, the state directory and the nucleus "
            "{} into {} with config.yaml:\n  {})".format(
                device.thing,
                directory,
                INSTALL_SCRIPT,
                self.opts.nucleus_version,
                GREENGRASS_ROOT,
                script.strip().splitlines()[-1],
            )
        )

    # -- v2 status ----------------------------------------------------------------------

    def status(self) -> int:
        """Components, the last deployment and each core device's view of it; 3 if failed."""
        ctx = self.ctx
        for name, component in sorted(self.record.get("components", {}).items()):
            ctx.out("component {} {}".format(name, component.get("version")))
        deployment = state_entry(self.record, "deployment")
        if not deployment.get("id"):
            raise DeployError(
                "no V2 deployment in state file {}".format(ctx.state.path),
                hint="run python -m deploy v2 up first, or pass the --state file it wrote",
            )
        ctx.out("v2 deployment {} for {}".format(deployment["id"], deployment.get("target")))
        devices = self.watcher.devices(deployment["target"], [])
        if not devices:
            ctx.out("  no core device has connected yet")
            return 0
        failed = False
        for thing, entry in self.watcher.statuses(devices, deployment["id"]).items():
            status = entry.get("coreDeviceExecutionStatus", "QUEUED")
            health = (
                ctx.api.find(
                    "greengrassv2",
                    "GetCoreDevice",
                    {"coreDeviceThingName": thing},
                    dry={"status": "HEALTHY"},
                )
                or {}
            )
            ctx.out(
                "  {}: {} (core device {}, last report {})".format(
                    thing,
                    status,
                    health.get("status", "unknown"),
                    health.get("lastStatusUpdateTimestamp", "never"),
                )
            )
            failed = failed or status in FAILED
        return DeploymentFailed.exit_code if failed else 0

    # -- v2 destroy ---------------------------------------------------------------------

    def destroy(
        self,
        force: bool = False,
        keep_certs: bool = False,
        delete_secret: bool = False,
        recovery_days: int = 30,
    ) -> int:
        """Remove what ``v2 up`` created, in dependency order (mirrors V1 ``destroy``)."""
        ctx = self.ctx
        deployment = state_entry(self.record, "deployment")
        ids: List[str] = [d for d in deployment.get("previous", []) + [deployment.get("id")] if d]
        if deployment.get("target") and not force:
            ids.append(self._remove_components_from_devices(deployment["target"]))
        for deployment_id in ids:
            self._cancel_and_delete(deployment_id)
        self.record.pop("deployment", None)
        ctx.state.save()
        for name, component in list(self.record.get("components", {}).items()):
            ctx.delete_if_present("greengrassv2", "DeleteComponent", {"arn": component["arn"]})
            for uri in component.get("artifacts") or [component.get("artifact", "")]:
                bucket, _, key = uri.replace("s3://", "", 1).partition("/")
                if bucket and key:
                    ctx.delete_if_present("s3", "DeleteObject", {"Bucket": bucket, "Key": key})
            del self.record["components"][name]
            ctx.state.save()
            ctx.note("component {} {}: deleted".format(name, component.get("version")))
        self.record.pop("components", None)
        cert_dir = Path(state_entry(self.record, "certificate").get("dir", self.opts.certs_dir))
        self.identity.destroy(keep_certs)
        if not keep_certs and not ctx.api.dry_run:
            for name in (CONFIG_FILE, INSTALL_SCRIPT):
                if (cert_dir / name).is_file():
                    (cert_dir / name).unlink()
        if not self.record:
            ctx.state.pop("v2", None)
        self.secrets.destroy(delete_secret, recovery_days)
        ctx.state.save()
        if ctx.api.dry_run:
            ctx.out("v2 destroy (dry-run): nothing was changed")
        elif ctx.state.is_empty():
            ctx.state.remove()
            ctx.out("v2 destroy: done; state file removed")
        else:
            ctx.out("v2 destroy: done; {} keeps what is left".format(ctx.state.path))
        return 0

    def _remove_components_from_devices(self, target: str) -> str:
        """A deployment with no components: each core removes ours. Waits like V1's reset."""
        response = self.ctx.api.call(
            "greengrassv2",
            "CreateDeployment",
            {"targetArn": target, "deploymentName": self.topology.name, "components": {}},
            dry={"deploymentId": "REMOVAL"},
        )
        deployment_id = response["deploymentId"]
        self.ctx.note(
            "v2 deployment {}: removes the components from {}".format(deployment_id, target)
        )
        try:
            self._wait(target, deployment_id)
        except (DeploymentFailed, DeploymentTimedOut):
            raise DeployError(
                "the core did not complete removing the components ({})".format(deployment_id),
                hint="re-run v2 destroy with --force (cloud side only; a core that has the "
                "components keeps them until its next deployment)",
            )
        return deployment_id

    def _cancel_and_delete(self, deployment_id: str) -> None:
        ctx = self.ctx
        try:
            ctx.api.call("greengrassv2", "CancelDeployment", {"deploymentId": deployment_id})
        except ClientError as exc:
            if error_code(exc) not in NOT_CANCELLABLE:
                raise
        ctx.delete_if_present("greengrassv2", "DeleteDeployment", {"deploymentId": deployment_id})
        ctx.note("v2 deployment {}: cancelled and deleted".format(deployment_id))
