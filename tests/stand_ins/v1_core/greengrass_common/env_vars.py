"""What a V1 core tells a function through its environment, read once at import as on a core."""

import os

MY_FUNCTION_ARN = os.environ.get("MY_FUNCTION_ARN")
AUTH_TOKEN = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
ROUTER_FUNCTION_ARN = os.environ.get("ROUTER_FUNCTION_ARN")
SHADOW_FUNCTION_ARN = os.environ.get("SHADOW_FUNCTION_ARN")
SECRETS_MANAGER_FUNCTION_ARN = os.environ.get("SECRETS_MANAGER_FUNCTION_ARN")
ENCODING_TYPE = os.environ.get("ENCODING_TYPE")
GG_DAEMON_PORT = os.environ.get("GG_DAEMON_PORT", "8000")
