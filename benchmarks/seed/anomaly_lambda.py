"""The seed's anomaly function ("2-IoT-ServiceNow"): one ServiceNow POST per message.

Every invocation fetches the secret again and posts with a new connection, no
timeout and no status check; the response is only printed. See
``benchmarks/seed/__init__.py`` for what was adapted to run it here (nothing in
this file).
"""

import json
import os
import sys  # noqa: F401 - imported, unused, as in the blog

import greengrasssdk
import requests

iot_client = greengrasssdk.client("iot-data")  # created, never used, as in the blog
secrets_client = greengrasssdk.client("secretsmanager")
SECRET_NAME = "greengrass-snow-creds"
snow_instance = os.environ["snowUrl"]  # noqa: SIM112 - the blog's variable; the full table URL


def publish_anomaly(message, title):
    auth = get_local_secret()
    create_ticket(auth, message, title)


def get_local_secret():
    """The secret from the core, on every call."""
    secret = secrets_client.get_secret_value(SecretId=SECRET_NAME)
    return json.loads(str(secret.get("SecretString")))


def create_ticket(auth, event_data, title):
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    fields = {
        "short_description": title,
        "assignment_group": "sensor_team",
        "urgency": "2",
        "impact": "2",
        "comments": event_data,
    }
    response = requests.post(
        url=snow_instance,
        auth=(str(auth["username"]), str(auth["password"])),
        headers=headers,
        data=json.dumps(fields),
    )
    print("Response:", response)


def lambda_handler(event, context):
    message = json.loads(json.dumps(event))
    title = "Sensor Threshold - " + message["title"]
    publish_anomaly(message, title)
    return
