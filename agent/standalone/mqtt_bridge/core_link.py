"""Wiring the local core's ``cloud`` target to a bridge."""

from __future__ import annotations

from typing import Any, List, Optional

from ...clock import Clock
from .bridge import MqttBridge
from .options import BridgeOptions


def cloud_subjects(topology: Any) -> List[str]:
    """The subjects of the topology's subscriptions whose source is ``cloud``."""
    from ...names import CLOUD

    return list(dict.fromkeys(s.subject for s in topology.subscriptions_from(CLOUD)))


def attach_bridge(
    core: Any, options: BridgeOptions, *, clock: Optional[Clock] = None
) -> MqttBridge:
    """Bridge a :class:`~agent.greengrass.local.LocalCore` to the broker ``options`` name.

    Everything the core routes to ``cloud`` is published; the subjects of
    subscriptions whose source is ``cloud`` are subscribed on every
    (re)connect and what arrives is routed with ``core.deliver_from_cloud``.
    Connecting happens in the background: this returns at once.
    """
    bridge = MqttBridge(
        options,
        subscriptions=cloud_subjects(core.topology),
        on_message=core.deliver_from_cloud,
        clock=clock,
    )
    core.add_cloud_link(bridge.publish)
    return bridge.start()
