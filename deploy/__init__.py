"""Deploy tooling: Greengrass V2 components and deployments, Greengrass V1 group versions.

Everything is built from the one description of the group's topology,
:func:`agent.topology.default_topology` (or a :class:`agent.topology.GroupTopology`
passed in). Pure document builders (``definitions``, ``policy``, ``v2.recipes``,
``v2.core_documents``, ``coreconfig``) and the checks of AWS's documented rules
(``validation``) are kept apart from AWS I/O (``awsapi`` and the one-class-per-service
modules of ``v1`` and ``v2``, sharing ``roles`` and ``things``), so most of it runs
offline. ``package`` builds the function zips for the Python that runs them
(``vendoring``, ``dependencies``). Entry point: ``python -m deploy`` / ``deploy.cli.main``.

Tooling code: runs on the operator's machine (Python 3.11 with boto3), never on the
device; nothing in ``agent/`` or ``functions/`` imports it.
"""
