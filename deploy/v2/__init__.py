"""Greengrass V2 from the same topology: recipes, artifacts, a deployment.

``recipes`` (component recipes, pure), ``plan`` (``v2 plan``: the documents,
validated offline), ``components`` (upload artifacts, create versions),
``deployments`` (the deployment document, waiting), ``deployer`` (``v2 up``).
"""

from .deployer import V2Deployer
from .deployments import deployment_params
from .plan import V2Options, V2Plan, build_v2_plan
from .recipes import (
    MQTT_PROXY,
    PLACEHOLDER_SECRET_MANAGER_VERSION,
    PUBSUB,
    SECRET_MANAGER,
    access_control,
    build_recipe,
    recipe_errors,
)

__all__ = [
    "MQTT_PROXY",
    "PLACEHOLDER_SECRET_MANAGER_VERSION",
    "PUBSUB",
    "SECRET_MANAGER",
    "V2Deployer",
    "V2Options",
    "V2Plan",
    "access_control",
    "build_recipe",
    "build_v2_plan",
    "deployment_params",
    "recipe_errors",
]
