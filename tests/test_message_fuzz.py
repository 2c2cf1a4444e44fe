"""Property-based fuzzing of the anomaly handler: malformed input never escapes, never opens."""

from __future__ import annotations

import json

import pytest
from helpers import anomaly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomaly_service import AnomalyService
from agent.config import AnomalySettings
from agent.greengrass.local import LocalCore
from agent.topology import ANOMALY_FUNCTION_ID

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
REQUIRED = [
    "schema",
    "event",
    "episode_id",
    "seq",
    "device",
    "metric",
    "bound",
    "unit",
    "limit",
    "value",
    "peak",
    "started_at",
    "ts",
    "title",
]
WRONG_VALUES = st.sampled_from(
    [
        None,
        "",
        "   ",
        [],
        {},
        True,
        -1,
        10**12,
        float("nan"),
        float("inf"),
        "x" * 300,
        "bad\ncontrol",
        "wind",
        "sideways",
    ]
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # ServiceNow is never reached: nothing malformed may even be queued.
    directory = tmp_path_factory.mktemp("fuzz")
    settings_ = AnomalySettings.from_mapping(
        {"snowUrl": "http://127.0.0.1:9", "stateDir": str(directory)}
    )
    svc = AnomalyService(settings_, LocalCore().runtime_for(ANOMALY_FUNCTION_ID))
    yield svc
    svc.outbox.close()


def _assert_rejected(service, payload):
    before = service.outbox.counts()["pending"]
    assert service.handle(payload, "IoTBlog/anomaly") is False
    assert service.outbox.counts()["pending"] == before == 0


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=JSON)
def test_arbitrary_json_is_rejected(service, payload):
    _assert_rejected(service, payload)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected(service, data):
    _assert_rejected(service, data)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(REQUIRED), value=WRONG_VALUES, drop=st.booleans())
def test_a_valid_message_with_one_field_broken_is_rejected(service, field, value, drop):
    message = anomaly()
    if drop:
        del message[field]
    else:
        if field in ("device", "episode_id", "title", "unit") and value in ("wind", "sideways"):
            value = None  # those are valid strings for free-text fields
        message[field] = value
    _assert_rejected(service, message)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=8200, max_value=50_000))
def test_oversized_messages_are_rejected(service, size):
    message = anomaly(title="t" * 10)
    message["padding"] = "x" * size
    _assert_rejected(service, json.dumps(message).encode())


def test_the_fuzzer_would_notice_a_valid_message(service):
    # Guard against a handler that rejects everything: a valid message is queued.
    assert service.handle(anomaly(), "IoTBlog/anomaly") is True
    service.outbox._db.execute("DELETE FROM pending")
