"""The message schemas: what a malformed message is refused with, and where the limits lie.

A handler gets a core's payload (dict, bytes or text); an episode event must pass
``edge-agent/anomaly/1`` before any of it reaches ServiceNow, a reading
``edge-agent/reading/1`` before a site gateway counts it.
"""

from __future__ import annotations

import json

import pytest
from helpers import anomaly

from agent.errors import MessageError
from agent.schema import READING_SCHEMA, decode, encode, validate_anomaly, validate_reading


def refused(check, message):
    with pytest.raises(MessageError) as info:
        check(message)
    return str(info.value)


# -- decoding what a core hands over ----------------------------------------------------------


def _padded(size):
    """A JSON object of exactly ``size`` bytes."""
    empty = len(json.dumps({"pad": ""}))
    return {"pad": "x" * (size - empty)}


def test_a_message_of_exactly_8_kb_is_read_in_every_form_and_one_byte_more_is_refused():
    fits, over = _padded(8192), _padded(8193)
    for form in (lambda m: m, lambda m: json.dumps(m), lambda m: json.dumps(m).encode()):
        assert decode(form(fits)) == fits
        assert refused(decode, form(over)) == "message larger than 8192 bytes"
    assert decode(bytearray(json.dumps(fits).encode())) == fits


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff{}", "message is not UTF-8"),
        ("{not json", "message is not JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", "message must be a JSON object, got list"),
        (b"7", "message must be a JSON object, got int"),
        (7, "message must be a JSON object, got int"),
        (None, "message must be a JSON object, got NoneType"),
    ],
)
def test_a_payload_that_is_no_json_object_is_refused_with_its_reason(payload, reason):
    assert refused(decode, payload).startswith(reason)


def test_a_mapping_that_cannot_be_written_as_json_is_refused():
    looped = {}
    looped["self"] = looped
    assert refused(decode, looped) == "message cannot be serialised as JSON"


def test_encode_is_compact_and_refuses_nan():
    assert encode({"a": 1, "b": [1.5]}) == b'{"a":1,"b":[1.5]}'
    with pytest.raises(ValueError):
        encode({"a": float("nan")})


# -- episode events ---------------------------------------------------------------------------


def test_a_valid_event_comes_back_clean_with_only_the_schemas_fields():
    message = anomaly(extra_field="ignored", clock_unsynced=True, start_clock_unsynced=False)
    message["duration"] = 15
    event = validate_anomaly(message)
    assert "extra_field" not in event and event["duration"] == 15.0
    assert event["clock_unsynced"] is True and "start_clock_unsynced" not in event
    assert event["limit"] == 50.0 and isinstance(event["seq"], int)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"schema": "edge-agent/anomaly/2"}, "schema must be 'edge-agent/anomaly/1', got"),
        ({"event": "opened"}, "event must be one of breach, update, recovered, got 'opened'"),
        ({"bound": 1}, "bound must be one of upper, lower, got 1"),
        ({"metric": "wind"}, "metric must be one of temperature, humidity, pressure, got 'wind'"),
        ({"device": " "}, "device must be a non-empty string of at most 200 characters, got ' '"),
        ({"device": "d" * 201}, "device must be a non-empty string of at most 200 characters"),
        ({"episode_id": "e" * 90}, "episode_id must be a non-empty string of at most 89"),
        ({"unit": "u" * 17}, "unit must be a non-empty string of at most 16 characters"),
        ({"title": "a\x1fb"}, "title contains control characters"),
        ({"title": "a\ud800"}, "title is not valid Unicode (it contains a lone surrogate)"),
        ({"seq": -1}, "seq must be a whole number from 0, got -1"),
        ({"seq": 10**9}, "seq must be a whole number from 0, got 1000000000"),
        ({"seq": True}, "seq must be a whole number from 0, got True"),
        ({"value": "63"}, "value must be a number, got '63'"),
        ({"peak": False}, "peak must be a number, got False"),
        ({"value": 100.5}, "value must be between 0.0 and 100.0, got 100.5"),
        ({"limit": -0.5}, "limit must be between 0.0 and 100.0, got -0.5"),
        ({"value": float("nan")}, "value must be between 0.0 and 100.0, got nan"),
        ({"ts": 1e11 + 1}, "ts must be between 0.0 and 100000000000.0"),
        ({"started_at": -1.0}, "started_at must be between 0.0 and 100000000000.0, got -1.0"),
        ({"duration": -1}, "duration must be between 0.0 and 10000000000.0, got -1.0"),
    ],
)
def test_a_malformed_event_is_refused_with_a_reason_a_person_can_act_on(change, reason):
    assert refused(validate_anomaly, dict(anomaly(), **change)).startswith(reason)


def test_the_limits_of_an_event_are_inclusive():
    edges = {
        "device": "d" * 200,
        "episode_id": "e" * 89,
        "unit": "u" * 16,
        "title": " \x20x",
        "seq": 10**9 - 1,
        "value": 100.0,
        "peak": 100,
        "limit": 0.0,
        "ts": 1e11,
        "started_at": 0,
        "duration": 0,
    }
    event = validate_anomaly(dict(anomaly(), **edges))
    assert {k: event[k] for k in edges} == dict(edges, peak=100.0, started_at=0.0, duration=0.0)
    assert validate_anomaly(dict(anomaly(), seq=0))["seq"] == 0


def test_a_temperature_event_is_checked_against_the_temperature_range():
    event = anomaly(metric="temperature", value=-60.0, peak=150.0, limit=30.0)
    assert validate_anomaly(event)["value"] == -60.0
    assert "got 150.5" in refused(validate_anomaly, dict(event, peak=150.5))


# -- readings ---------------------------------------------------------------------------------


def reading(**change):
    message = {
        "schema": READING_SCHEMA,
        "device": "pi-kitchen",
        "seq": 42,
        "ts": 1_790_000_000.0,
        "temperature": 23.41,
        "humidity": 48.2,
        "pressure": 1012.9,
    }
    message.update(change)
    return message


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"humidity": None},
        {"temperature": 23, "ts": 1_790_000_000},  # whole numbers, as some senders write them
        {"pressure": 1300.0, "humidity": 0.0, "temperature": -60.0, "seq": 0, "ts": 0.0},
        {"device": "d" * 200, "ts": 1e11},
        {"extra": "ignored"},
    ],
)
def test_a_valid_reading_comes_back_with_floats_and_only_its_fields(change):
    message = reading(**change)
    out = validate_reading(message)
    expected = {k: message[k] for k in ("schema", "device", "seq")}
    for key in ("ts", "temperature", "humidity", "pressure"):
        expected[key] = None if message[key] is None else float(message[key])
    assert out == expected
    assert all(type(out[k]) is float for k in ("ts", "temperature") if out[k] is not None)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"schema": "edge-agent/reading/2"}, "schema must be 'edge-agent/reading/1'"),
        ({"device": ""}, "device must be a non-empty string of at most 200 characters"),
        ({"device": "   "}, "device must be a non-empty string of at most 200 characters"),
        ({"device": "d" * 201}, "device must be a non-empty string of at most 200 characters"),
        ({"device": "pi\x07"}, "device contains control characters"),
        ({"device": "pi\ud800"}, "device is not valid Unicode"),
        ({"seq": -1}, "seq must be a whole number from 0, got -1"),
        ({"seq": 1.0}, "seq must be a whole number from 0, got 1.0"),
        ({"seq": False}, "seq must be a whole number from 0, got False"),
        ({"ts": -0.5}, "ts must be between 0.0 and 100000000000.0, got -0.5"),
        ({"ts": 1e11 * 2}, "ts must be between 0.0 and 100000000000.0"),
        ({"humidity": 100.5}, "humidity must be between 0.0 and 100.0, got 100.5"),
        ({"temperature": None, "pressure": None, "humidity": -0.5}, "humidity must be between"),
        ({"ts": 1e11 + 0.5}, "ts must be between 0.0 and 100000000000.0"),
        ({"pressure": 199.0}, "pressure must be between 200.0 and 1300.0, got 199.0"),
        ({"temperature": float("inf")}, "temperature must be between -60.0 and 150.0, got inf"),
        ({"temperature": "22"}, "temperature must be a number, got '22'"),
    ],
)
def test_a_malformed_reading_is_refused_with_its_reason(change, reason):
    assert refused(validate_reading, reading(**change)).startswith(reason)


def test_a_refused_value_is_named_whole_up_to_60_characters_then_cut():
    whole = "x" * 58  # its repr, quotes included, is 60 characters
    assert refused(validate_anomaly, dict(anomaly(), event=whole)).endswith("got '" + whole + "'")
    cut = refused(validate_anomaly, dict(anomaly(), event=whole + "y"))
    assert cut.endswith("got '" + "x" * 56 + "...")
