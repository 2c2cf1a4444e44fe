"""The seed's sensor function ("1-IoT-GetSensorData"): read, sleep 5 s, judge, publish.

See ``benchmarks/seed/__init__.py`` for what was adapted to run it here.
"""

import json
import os
import sys  # noqa: F401 - imported, unused, as in the blog
import time
from datetime import datetime

import boto3  # noqa: F401 - imported, unused, as in the blog (a slow cold start on a Pi)
import greengrasssdk
from sense_hat import SenseHat

READINGS_TOPIC = "IoTBlog/sensorData"
ANOMALY_TOPIC = "IoTBlog/anomaly"
SAMPLE_DELAY_S = 5  # ADAPTED: a module attribute, so the harness can shorten it
sleep = time.sleep  # ADAPTED: replaceable by a virtual sleep

iot_client = greengrasssdk.client("iot-data")
secrets_client = greengrasssdk.client("secretsmanager")  # created, never used, as in the blog
sense = SenseHat()
sense.clear()

temp_limit = int(os.environ["tempLimit"])  # noqa: SIM112 - the blog's variable names
humid_limit = int(os.environ["humidLimit"])  # noqa: SIM112


def lambda_handler(event, context):
    """Nothing: the blog's handler returns at once."""
    return


def read_and_publish():
    """One pass of the blog's ``while True`` loop."""
    title = "no event"
    anomaly = False
    ts = time.time()
    dt = datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")

    temp = round(sense.get_temperature(), 2)
    humidity = round(sense.get_humidity(), 2)

    sleep(SAMPLE_DELAY_S)  # the reading is this many seconds stale when published

    if temp > int(temp_limit):
        anomaly = True
        title = "Temperature breach"
    if humidity > int(humid_limit):
        anomaly = True
        title = "Humidity breach"  # overwrites the temperature title when both breach

    sample = {"title": title, "dt": dt, "ts": ts, "t": temp, "h": humidity}
    publish_data(anomaly, sample)


def get_sensor_data():
    """The blog's sensor loop (the blog never starts it; the harness does)."""
    while True:
        read_and_publish()


def publish_data(anomaly, sample):
    """Publish every sample; ADAPTED: breaching ones to the anomaly topic too (the prose)."""
    payload = json.dumps(sample).encode("utf-8")  # ADAPTED: the blog passes str
    iot_client.publish(topic=READINGS_TOPIC, payload=payload)
    if anomaly:
        iot_client.publish(topic=ANOMALY_TOPIC, payload=payload)
