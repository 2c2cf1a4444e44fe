"""Values the agent puts into sysparm_query are inert, whatever the device is called."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SNOW_USER, secret_json
from helpers import anomaly, wait_until

from agent.config import AnomalySettings
from agent.greengrass.local import LocalCore
from agent.servicenow.incidents import action_for, correlation_id, safe_correlation_id
from agent.servicenow.query_safe import is_query_safe, query_safe
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

SAFE = re.compile(r"[A-Za-z0-9._:-]*")


@pytest.mark.parametrize(
    "device",
    ["lab^pi", "a=b", "pi 7", "büro-pi", "x^ORDERBYnumber", "a@b!=c<d>", "~", "lab_pi"],
)
def test_any_device_gives_a_safe_distinct_stable_correlation_id(device):
    episode = "{}:humidity:upper:1790000000".format(device)
    corr = correlation_id(episode)
    assert SAFE.fullmatch(corr) and len(corr) <= 100
    assert corr == correlation_id(episode)  # deterministic
    assert safe_correlation_id(corr) == corr  # and already in its final form


def test_safe_ids_are_unchanged_and_unsafe_ones_keep_their_readable_part():
    assert correlation_id("pi-7:humidity:upper:1") == "edge-agent:pi-7:humidity:upper:1"
    assert query_safe("lab^pi", 100) == "lab_pi-" + _sha1("lab^pi")
    # Two ids that differ only in unsafe characters stay apart.
    assert query_safe("lab^pi", 100) != query_safe("lab=pi", 100) != query_safe("lab_pi", 100)
    assert is_query_safe("lab_pi") and not is_query_safe("lab^pi")


def test_a_long_id_keeps_as_much_of_itself_as_the_100_character_column_holds():
    # A safe episode id that just fits stays readable as it is.
    fits = "p" * 63 + ":humidity:upper:1790000000"
    assert correlation_id(fits) == "edge-agent:" + fits
    assert len(correlation_id(fits)) == 100
    # An unsafe one of the same length (the longest an anomaly message carries) is cut to
    # the column's size exactly: the readable start, "-", then the hash that keeps it unique.
    unsafe = "lab^" + fits[4:]
    corr = correlation_id(unsafe)
    assert len(corr) == 100 and SAFE.fullmatch(corr)
    assert corr.startswith("edge-agent:lab_" + "p" * 59)
    assert corr.endswith("-" + _sha1(unsafe))


def test_a_correlation_id_queued_by_an_older_version_is_made_safe_the_same_way():
    old_style = "edge-agent:lab^pi:humidity:upper:1790000000"
    assert safe_correlation_id(old_style) == correlation_id("lab^pi:humidity:upper:1790000000")


def test_the_human_readable_device_stays_in_the_incident_text():
    settings = AnomalySettings.from_mapping({"snowUrl": "https://x.service-now.com"})
    action = action_for(anomaly(episode="lab^pi:humidity:upper:1790000000"), settings)
    assert "lab^pi" in action.fields["short_description"]
    assert "Device: lab^pi" in action.fields["description"]
    assert "^" not in action.fields["correlation_id"]


def test_the_client_refuses_to_put_an_unsafe_value_in_a_query(standin, anomaly_settings, core):
    service = anomaly_function.create_app(
        environ={"snowUrl": standin.url, "stateDir": anomaly_settings.state_dir},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
    )
    with pytest.raises(ValueError, match="not safe"):
        service.client.find_by_correlation("edge-agent:lab^pi:humidity:upper:1")
    assert standin.request_log == []  # nothing was sent


def _sha1(text):
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _query_values(path):
    query = parse_qs(urlsplit(path).query).get("sysparm_query", [""])[0]
    values = []
    for term in query.split("^"):
        if "=" in term:
            values.append(term.split("=", 1)[1])
    return query, values


def test_odd_device_ids_against_a_servicenow_slower_than_the_timeout_make_one_incident_each(
    standin, password, tmp_path
):
    # Writes take 0.4 s to commit; the agent gives up after 0.2 s. Before the fix a
    # '^' cut the lookup short, so after every timed-out create the agent found
    # nothing and created again.
    standin.faults.commit_delay = 0.4
    core = LocalCore()
    core.add_secret("greengrass-snow-creds", secret_json(password, SNOW_USER))
    service = anomaly_function.create_app(
        environ={
            "snowUrl": standin.url,
            "stateDir": str(tmp_path),
            "snowTimeout": "0.2",
            "retryBaseSeconds": "0.05",
            "retryMaxSeconds": "0.2",
        },
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
    )
    # Also a device id long enough to need the hashed correlation id, and one whose
    # correlation id fills the column exactly: an id over 100 characters would be cut by
    # ServiceNow, the lookup by the uncut one would miss, and each retry would create again.
    devices = ["lab^pi", "a=b", "lab^" + "p" * 59, "p" * 63]
    for device in devices:
        episode = "{}:humidity:upper:1790000000".format(device)
        service.handle(anomaly("breach", 0, episode))
        service.handle(anomaly("recovered", 1, episode, value=40.0, ts=1_790_000_400.0))
    deadline = time.monotonic() + 30
    while service.next_attempt_at() is not None and time.monotonic() < deadline:
        service.pump()
        next_at = service.next_attempt_at()
        if next_at is not None:
            time.sleep(min(0.5, max(0.0, next_at - time.time())))
    assert service.next_attempt_at() is None, service.summary()
    # Every create the agent sent has committed (the stand-in logs a request after its
    # commit, answered or not): a duplicate would be there now.
    assert wait_until(lambda: _posts(standin) >= service.client.calls["POST"])
    incidents = standin.incidents()
    assert len(incidents) == 4, [i["correlation_id"] for i in incidents]
    for device in devices:
        corr = correlation_id("{}:humidity:upper:1790000000".format(device))
        (incident,) = [i for i in incidents if i["correlation_id"] == corr]
        assert incident["state"] == "6"
        assert "Device: {}".format(device) in incident["description"]
    assert "edge-agent:{}:humidity:upper:1790000000".format("p" * 63) in [
        i["correlation_id"] for i in incidents
    ]
    for _method, path, _status in standin.request_log:
        query, values = _query_values(path)
        assert all(SAFE.fullmatch(v) for v in values), query
    service.outbox.close()


def _posts(standin):
    return sum(1 for method, _path, _status in standin.request_log if method == "POST")
