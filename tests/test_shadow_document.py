"""The shadow semantics module against the examples of the AWS IoT Developer Guide.

"Device Shadow service documents" (delta state, empty sections, arrays),
"Interacting with shadows" (optimistic locking, deleting a property or the
shadow), "Device Shadow MQTT topics" (what /update/delta holds) and "Device
Shadow error messages" (codes and messages).
"""

from __future__ import annotations

import json

import pytest

from agent.greengrass.shadow_document import (
    MAX_STATE_BYTES,
    ShadowRejected,
    ThingShadow,
    parse_topic,
)

NOW = 1_790_000_000.0


def shadow_with(**state):
    shadow = ThingShadow("thing")
    shadow.update({"state": state}, NOW)
    return shadow


def rejected(shadow, payload, op="update"):
    with pytest.raises(ShadowRejected) as info:
        getattr(shadow, op)(payload, NOW)
    return info.value


# -- "Delta state" -------------------------------------------------------------------------


def test_delta_holds_desired_fields_reported_lacks_or_differs_in():
    shadow = shadow_with(
        desired={"color": "RED", "state": "STOP"}, reported={"color": "GREEN", "engine": "ON"}
    )
    doc = shadow.get(None, NOW)
    assert doc["state"]["delta"] == {"color": "RED", "state": "STOP"}
    # "The delta contains metadata, and its values are equal to the metadata in the desired field."
    result = shadow.update({"state": {"desired": {"color": "RED"}}}, NOW + 5)
    assert result.delta["metadata"] == {
        "color": {"timestamp": int(NOW + 5)},
        "state": {"timestamp": int(NOW)},
    }


def test_nested_objects_differ_down_to_the_leaf_with_the_path_to_the_root():
    shadow = shadow_with(
        desired={"lights": {"color": {"r": 255, "g": 255, "b": 255}}},
        reported={"lights": {"color": {"r": 255, "g": 0, "b": 255}}},
    )
    assert shadow.delta() == {"lights": {"color": {"g": 255}}}


def test_arrays_are_values_copied_whole_into_the_delta():
    shadow = shadow_with(desired={"colors": ["RED", "GREEN"]}, reported={"colors": ["RED"]})
    assert shadow.delta() == {"colors": ["RED", "GREEN"]}


def test_delta_rules_of_the_update_delta_topic():
    shadow = shadow_with(desired={"a": 1, "b": 2}, reported={"a": 1, "c": 3})
    # Equal attributes are left out; reported-only ones too; desired-only ones are in.
    assert shadow.delta() == {"b": 2}
    # "If an attribute is deleted from the reported section but still exists in desired, it is included."
    shadow.update({"state": {"reported": {"a": None}}}, NOW)
    assert shadow.delta() == {"a": 1, "b": 2}


def test_numbers_compare_by_value_and_booleans_are_not_numbers():
    shadow = shadow_with(desired={"limit": 55, "on": True}, reported={"limit": 55.0, "on": 1})
    assert shadow.delta() == {"on": True}


def test_no_delta_when_desired_and_reported_agree():
    shadow = shadow_with(desired={"x": 1})
    result = shadow.update({"state": {"reported": {"x": 1}}}, NOW)
    assert result.delta is None and shadow.get(None, NOW)["state"].keys() == {"desired", "reported"}


# -- "Empty shadow document properties", "Array values", deleting data -----------------------


def test_setting_desired_to_null_removes_the_section():
    shadow = shadow_with(desired={"color": "RED"}, reported={"color": "red"})
    shadow.update({"state": {"reported": {"color": "red"}, "desired": None}}, NOW)
    assert shadow.get(None, NOW)["state"] == {"reported": {"color": "red"}}


def test_a_null_field_deletes_that_property_only():
    shadow = shadow_with(desired={"color": {"r": 10}, "engine": "ON"})
    result = shadow.update({"state": {"desired": {"engine": None}}}, NOW)
    assert shadow.desired == {"color": {"r": 10}}
    assert result.accepted["state"] == {"desired": {"engine": None}}  # the request, as sent


def test_deleting_the_last_field_of_a_nested_object_removes_the_object():
    shadow = shadow_with(desired={"sensor": {"humidLimit": 55}, "other": 1})
    shadow.update({"state": {"desired": {"sensor": {"humidLimit": None}}}}, NOW)
    assert shadow.desired == {"other": 1}
    assert shadow.get(None, NOW)["metadata"] == {"desired": {"other": {"timestamp": int(NOW)}}}


def test_an_update_to_an_array_replaces_the_whole_array():
    shadow = shadow_with(desired={"colors": ["RED", "GREEN", "BLUE"]})
    shadow.update({"state": {"desired": {"colors": ["RED"]}}}, NOW)
    assert shadow.desired == {"colors": ["RED"]}


def test_an_array_with_a_null_is_rejected_and_changes_nothing():
    shadow = shadow_with(desired={"colors": ["RED"]})
    error = rejected(shadow, {"state": {"desired": {"colors": [None, "RED", "GREEN"]}}})
    assert error.code == 400
    assert shadow.desired == {"colors": ["RED"]} and shadow.version == 1


def test_state_null_clears_both_sections_and_still_counts_a_version():
    shadow = shadow_with(desired={"a": 1}, reported={"a": 2})
    shadow.update({"state": None}, NOW)
    doc = shadow.get(None, NOW)
    assert doc["state"] == {} and doc["version"] == 2


# -- versions and client tokens ("Optimistic locking") ---------------------------------------


def test_optimistic_locking_example():
    shadow = ThingShadow("thing")
    for _ in range(10):
        shadow.update({"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}}, NOW)
    assert shadow.version == 10
    token = "426bfd96-e720-46d3-95cd-014e3ef12bb6"
    error = rejected(
        shadow, {"state": {"desired": {"colors": ["BLUE"]}}, "version": 9, "clientToken": token}
    )
    assert error.document(NOW) == {
        "code": 409,
        "message": "Version conflict",
        "clientToken": token,
        "timestamp": int(NOW),
    }
    shadow.update({"state": {"desired": {"colors": ["BLUE"]}}, "version": 10}, NOW)
    assert shadow.desired == {"colors": ["BLUE"]} and shadow.version == 11


def test_every_answer_to_a_request_carries_its_client_token():
    shadow = ThingShadow("thing")
    result = shadow.update({"state": {"desired": {"x": 1}}, "clientToken": "t-1"}, NOW)
    assert result.accepted["clientToken"] == "t-1"
    assert result.delta["clientToken"] == "t-1"
    assert result.documents["clientToken"] == "t-1"
    assert shadow.get({"clientToken": "t-2"}, NOW)["clientToken"] == "t-2"
    assert "clientToken" not in shadow.update({"state": {}}, NOW).accepted


def test_documents_hold_the_previous_and_the_current_document():
    shadow = ThingShadow("thing")
    first = shadow.update({"state": {"desired": {"x": 1}}}, NOW)
    assert "previous" not in first.documents  # a new shadow has no previous document
    second = shadow.update({"state": {"reported": {"x": 1}}}, NOW + 1)
    assert second.documents["previous"]["state"] == {"desired": {"x": 1}}
    assert second.documents["previous"]["version"] == 1
    assert second.documents["current"]["state"] == {"desired": {"x": 1}, "reported": {"x": 1}}
    assert second.documents["current"]["version"] == 2


def test_accepted_answer_echoes_the_request_with_metadata_and_version():
    shadow = ThingShadow("thing")
    result = shadow.update({"state": {"reported": {"temp": 55}}}, NOW)
    assert result.accepted == {
        "state": {"reported": {"temp": 55}},
        "metadata": {"reported": {"temp": {"timestamp": int(NOW)}}},
        "version": 1,
        "timestamp": int(NOW),
    }


def test_metadata_keeps_the_time_each_leaf_was_last_updated():
    shadow = shadow_with(reported={"a": 1, "b": {"c": 2}})
    shadow.update({"state": {"reported": {"b": {"d": 3}}}}, NOW + 60)
    meta = shadow.get(None, NOW)["metadata"]["reported"]
    assert meta == {
        "a": {"timestamp": int(NOW)},
        "b": {"c": {"timestamp": int(NOW)}, "d": {"timestamp": int(NOW + 60)}},
    }


# -- get and delete ---------------------------------------------------------------------------


def test_get_of_a_thing_without_a_shadow_is_404():
    error = rejected(ThingShadow("pi"), None, op="get")
    assert (error.code, error.message) == (404, "No shadow exists with name: 'pi'")


def test_delete_keeps_the_version_for_the_next_document():
    shadow = shadow_with(desired={"a": 1})
    shadow.update({"state": {"desired": {"a": 2}}}, NOW)
    assert shadow.delete(None, NOW) == {"version": 2, "timestamp": int(NOW)}
    assert rejected(shadow, None, op="get").code == 404
    assert rejected(shadow, None, op="delete").code == 404
    shadow.update({"state": {"reported": {"a": 1}}}, NOW)
    assert shadow.get(None, NOW)["version"] == 3
    assert shadow.get(None, NOW)["state"] == {"reported": {"a": 1}}


# -- "Device Shadow error messages" -----------------------------------------------------------


@pytest.mark.parametrize(
    "payload, code, message",
    [
        (b"{not json", 400, "Invalid JSON"),
        (b"[1, 2]", 400, "Invalid JSON"),
        (b'{"state": {"desired": {"x": NaN}}}', 400, "Invalid JSON"),
        ({"clientToken": "x"}, 400, "Missing required node: state"),
        ({"state": 5}, 400, "State node must be an object"),
        ({"state": {"desired": [1]}}, 400, "Desired node must be an object"),
        ({"state": {"reported": "on"}}, 400, "Reported node must be an object"),
        ({"state": {"desired": {}}, "version": "3"}, 400, "Invalid version"),
        ({"state": {"desired": {}}, "version": -1}, 400, "Invalid version"),
        ({"state": {"desired": {}}, "version": True}, 400, "Invalid version"),
        ({"state": {}, "clientToken": "x" * 65}, 400, "Invalid clientToken"),
        ({"state": {}, "clientToken": 7}, 400, "Invalid clientToken"),
        ({"state": {"desired": {}, "color": 1}}, 400, "State contains an invalid node"),
        (
            {"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}},
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        ({"state": {}, "version": 7}, 409, "Version conflict"),
        (b"\xff\xfe{}", 415, "Unsupported documented encoding; supported encoding is UTF-8"),
        (b" " * (128 * 1024 + 1), 413, "The payload exceeds the maximum size allowed"),
    ],
)
def test_refusals_have_the_documented_codes_and_messages(payload, code, message):
    shadow = ThingShadow("thing")
    error = rejected(shadow, payload)
    assert (error.code, error.message) == (code, message)
    assert shadow.version == 0 and not shadow.exists


def test_six_levels_counting_the_section_are_allowed():
    shadow = ThingShadow("thing")
    shadow.update({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}}, NOW)
    assert shadow.desired["a"]["b"]["c"]["d"]["e"] == {"f": 1}


def test_state_larger_than_the_limit_is_413_and_the_shadow_unchanged():
    shadow = shadow_with(desired={"small": 1})
    big = {"state": {"reported": {"blob": "x" * MAX_STATE_BYTES}}}
    error = rejected(shadow, json.dumps(big).encode())
    assert error.code == 413
    assert shadow.reported is None and shadow.version == 1


def test_a_refusal_names_the_client_token_when_it_was_valid():
    error = rejected(ThingShadow("thing"), {"clientToken": "abc", "state": 3})
    assert error.document(NOW)["clientToken"] == "abc"


def test_a_delta_field_in_a_request_is_ignored():
    shadow = ThingShadow("thing")
    shadow.update({"state": {"desired": {"x": 1}, "delta": {"x": 9}}}, NOW)
    assert shadow.get(None, NOW)["state"]["delta"] == {"x": 1}


def test_persisted_shadows_come_back_the_same():
    shadow = shadow_with(desired={"a": {"b": 1}}, reported={"a": {"b": 2}})
    again = ThingShadow.from_json(json.loads(json.dumps(shadow.to_json())))
    assert again.get(None, NOW) == shadow.get(None, NOW)


@pytest.mark.parametrize(
    "topic, parsed",
    [
        ("$aws/things/pi/shadow/update", ("pi", "update", "")),
        ("$aws/things/pi/shadow/update/delta", ("pi", "update", "delta")),
        ("$aws/things/pi/shadow/get/accepted", ("pi", "get", "accepted")),
        ("$aws/things/pi/shadow/name/cfg/update", None),
        ("$aws/things/pi/shadow/frobnicate", None),
        ("IoTBlog/sensorData", None),
    ],
)
def test_classic_shadow_topics_are_recognised(topic, parsed):
    assert parse_topic(topic) == parsed


# -- the edges of the limits ------------------------------------------------------------------


def _state_of_size(size, char="x"):
    """A reported section whose JSON is ``size`` bytes of UTF-8 (``char`` 1 or 2 bytes)."""
    room = size - len(json.dumps({"blob": ""}, separators=(",", ":")))
    width = len(char.encode("utf-8"))
    return {"blob": "x" * (room % width) + char * (room // width)}


@pytest.mark.parametrize("char", ["x", "é"])
def test_a_state_of_exactly_8_kb_is_accepted_and_one_byte_more_is_413(char):
    shadow = ThingShadow("thing")
    shadow.update({"state": {"reported": _state_of_size(8192, char)}}, NOW)  # ShadowManager's 8 KB
    assert shadow.version == 1
    width = len(char.encode("utf-8"))
    big = _state_of_size(8192 + width, char)
    error = rejected(shadow, {"state": {"reported": big}})
    assert (error.code, error.message) == (413, "The payload exceeds the maximum size allowed")
    assert shadow.version == 1


def test_a_request_of_exactly_128_kb_is_read():
    request = b'{"state": {"desired": {"x": 1}}}'
    padded = request + b" " * (128 * 1024 - len(request))
    shadow = ThingShadow("thing")
    shadow.update(padded, NOW)
    assert shadow.desired == {"x": 1}


def test_a_client_token_of_exactly_64_bytes_is_accepted():
    token = "é" * 32  # 64 bytes of UTF-8
    result = ThingShadow("thing").update({"state": {}, "clientToken": token}, NOW)
    assert result.accepted["clientToken"] == token


def test_version_0_is_the_version_of_a_shadow_never_updated():
    shadow = ThingShadow("thing")
    shadow.update({"state": {"desired": {"x": 1}}, "version": 0}, NOW)
    assert shadow.version == 1


@pytest.mark.parametrize("payload", [None, b"", ""])
def test_an_update_without_a_body_is_invalid_json(payload):
    error = rejected(ThingShadow("thing"), payload)
    assert (error.code, error.message) == (400, "Invalid JSON")


def test_a_refusal_reads_as_its_code_and_message():
    with pytest.raises(ShadowRejected, match="^409 Version conflict$"):
        ThingShadow("thing").update({"state": {}, "version": 3}, NOW)


def test_an_empty_object_is_no_level_of_nesting():
    shadow = ThingShadow("thing")
    shadow.update({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}}}, NOW)
    assert shadow.version == 1 and shadow.desired is None  # an empty object is no value


# -- delta: what compares equal --------------------------------------------------------------


def test_equal_strings_are_no_delta_and_a_string_is_not_the_array_of_its_letters():
    shadow = shadow_with(desired={"a": "xy", "b": "on"}, reported={"a": ["x", "y"], "b": "on"})
    assert shadow.delta() == {"a": "xy"}


def test_objects_in_arrays_compare_field_by_field():
    shadow = shadow_with(
        desired={"same": [{"a": 1}], "value": [{"a": 1}], "keys": [{"a": 1}]},
        reported={"same": [{"a": 1.0}], "value": [{"a": 2}], "keys": [{"b": 1}]},
    )
    assert shadow.delta() == {"value": [{"a": 1}], "keys": [{"a": 1}]}


def test_an_object_against_a_value_is_a_delta_either_way():
    shadow = shadow_with(desired={"a": {"b": 1}, "c": 5}, reported={"a": 5, "c": {"d": 1}})
    assert shadow.delta() == {"a": {"b": 1}, "c": 5}


def test_documents_current_holds_no_delta():
    result = ThingShadow("thing").update({"state": {"desired": {"x": 1}}}, NOW)
    assert result.documents["current"]["state"] == {"desired": {"x": 1}}
    assert result.delta["state"] == {"x": 1}


@pytest.mark.parametrize(
    "topic", ["$aws/things//shadow/update", "$aws/things//shadow/update/delta"]
)
def test_a_topic_without_a_thing_name_is_no_shadow_topic(topic):
    assert parse_topic(topic) is None


def test_a_saved_shadow_without_a_version_is_refused_as_malformed(tmp_path, caplog):
    from agent.greengrass.local_shadow import LocalShadowService

    path = tmp_path / "shadows.json"
    saved = {"thing": "pi", "desired": {"x": 1}, "exists": True}
    path.write_text(json.dumps({"version": 1, "shadows": [saved]}))
    service = LocalShadowService(lambda: NOW, str(path))
    assert service.document("pi") is None
    assert "ignoring a malformed saved shadow" in caplog.text
