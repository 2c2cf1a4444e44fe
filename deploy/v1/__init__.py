"""Greengrass V1: ``up``, ``status``, ``reset``, ``destroy`` with boto3.

One module per AWS service driven: ``lambdas`` (IAM execution role and Lambda
functions), ``secrets`` (Secrets Manager), ``greengrass`` (group, roles,
definitions, group version), ``deployments`` (deploy, wait, status, reset),
``teardown`` (destroy); the core's IoT identity is ``deploy.things`` (shared
with V2). ``deployer`` puts them in order.
"""

from .deployer import ROOT_CONFIG_NOTE, UpOptions, V1Deployer
from .secrets import parse_secret_value, read_secret_value

__all__ = [
    "ROOT_CONFIG_NOTE",
    "UpOptions",
    "V1Deployer",
    "parse_secret_value",
    "read_secret_value",
]
