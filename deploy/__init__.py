"""Deploy tooling: Greengrass V1 group versions and Greengrass V2 deployments.

Everything is built from the one description of the group's topology,
:func:`agent.topology.default_topology` (or a :class:`agent.topology.GroupTopology`
passed in). Pure document builders (``definitions``, ``policy``, ``v2`` recipes,
``coreconfig``) are kept apart from AWS I/O (``awsapi``, ``v1``, ``v2``), so
most of it runs offline. Entry point: ``python -m deploy`` / ``deploy.cli.main``.

Tooling code: runs on the operator's machine (Python 3.9+ with boto3), never
on the device; nothing in ``agent/`` or ``functions/`` imports it.
"""
