"""The group's names a function needs at run time: function ids, default topics, paths.

They belong to the group's description (:mod:`agent.topology`, which
re-exports every one of them) but live here so that the functions, the
variable table and the health reports can name them without loading the
topology's classes on a function's cold start (the rule: :mod:`agent.record`).
"""

CLOUD = "cloud"
# A V1 core's local shadow service, as subscriptions name it.
SHADOW_SERVICE = "GGShadowService"
# Shadow subjects name the thing, known only where the group runs or is deployed:
# the topology holds this token, and ``GroupTopology.for_thing`` puts the name in.
THING_TOKEN = "{thing}"
DEFAULT_SECRET_NAME = "greengrass-snow-creds"
DEFAULT_READINGS_TOPIC = "IoTBlog/sensorData"
DEFAULT_ANOMALY_TOPIC = "IoTBlog/anomaly"

SENSOR_FUNCTION_ID = "sensor"
ANOMALY_FUNCTION_ID = "anomaly"
STATUS_FUNCTION_ID = "status"
# Each function's health counters (edge-agent/health/1), local only: never routed to cloud.
HEALTH_TOPIC = "edge-agent/health/{function}"
# Set by the topology in every function's environment when the group has a status
# function, so a V2 component (which routes its own messages) knows to send it copies.
STATUS_SWITCH = "EDGE_AGENT_STATUS"
# Set by the deployment in each V1 function's environment: the subjects of the group's
# subscriptions from that function (a JSON list), so it can tell a topic no subscription
# routes, which a V1 core drops without a word, without loading the topology at start.
ROUTES_VARIABLE = "EDGE_AGENT_ROUTES"
SNOW_SECRET_RESOURCE_ID = "snow-credentials"
STATE_VOLUME_ID = "edge-agent-state"
# Episode state and the outbox must outlive a container restart, so they live on a
# host directory mounted as a local volume resource (create it on the Pi, owned by
# the functions' uid/gid). Not /var/lib: AWS IoT Greengrass V1 accepts a volume's
# source path anywhere on the root file system *except under /sys, /dev or /var*
# (Developer Guide, "Access local resources with Lambda functions and connectors",
# docs.aws.amazon.com/greengrass/v1/developerguide/access-local-resources.html);
# the core fails with "unable to start lambda container" otherwise. /opt is the
# FHS place for an add-on package's files and is not on that list.
DEVICE_STATE_DIR = "/opt/edge-agent/state"
