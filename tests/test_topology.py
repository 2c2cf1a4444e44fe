"""The group as deployed: what AWS's V1 rules allow, and one place for the state directory."""

from __future__ import annotations

import posixpath

from agent.topology import (
    ANOMALY_FUNCTION_ID,
    DEVICE_STATE_DIR,
    SENSOR_FUNCTION_ID,
    STATE_VOLUME_ID,
    default_topology,
)

# AWS IoT Greengrass V1 Developer Guide, "Access local resources with Lambda functions
# and connectors": a volume's source may be anywhere on the root file system except
# under /sys, /dev or /var; device resources are under /dev.
V1_FORBIDDEN_VOLUME_ROOTS = ("/sys", "/dev", "/var")


def _under(path: str, root: str) -> bool:
    path = posixpath.normpath(path)
    return path == root or path.startswith(root + "/")


def test_the_state_volume_is_where_a_v1_core_accepts_volumes():
    topology = default_topology()
    [volume] = [v for v in topology.volumes if v.id == STATE_VOLUME_ID]

    assert volume.source_path == DEVICE_STATE_DIR == volume.destination_path
    assert posixpath.isabs(volume.source_path)
    assert not any(_under(volume.source_path, root) for root in V1_FORBIDDEN_VOLUME_ROOTS)


def test_both_functions_keep_their_state_on_the_volume():
    topology = default_topology()
    for function_id in (SENSOR_FUNCTION_ID, ANOMALY_FUNCTION_ID):
        spec = topology.function(function_id)
        assert spec.environment["stateDir"] == DEVICE_STATE_DIR
        assert any(
            a.resource_id == STATE_VOLUME_ID and a.permission == "rw" for a in spec.resource_access
        )


def test_device_resources_are_device_files():
    for device in default_topology().devices:
        assert _under(device.source_path, "/dev"), device


def test_no_home_override_that_the_sense_hat_library_would_ignore():
    # sense_hat finds its settings folder from the passwd entry of the run-as
    # user, not $HOME; the README says what the operator creates instead.
    assert "HOME" not in default_topology().function(SENSOR_FUNCTION_ID).environment
