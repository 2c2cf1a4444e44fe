"""Hostile or odd text from a device never reaches ServiceNow as markup, and never crashes
the handler; events older than what an episode already saw are dropped."""

from __future__ import annotations

import json
import logging
import re
import unicodedata

import pytest
from helpers import anomaly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomaly_service import AnomalyService
from agent.config import AnomalySettings
from agent.errors import MessageError
from agent.greengrass.local import LocalCore
from agent.schema import validate_anomaly
from agent.servicenow.incidents import action_for
from agent.servicenow.text import clean_text
from agent.topology import ANOMALY_FUNCTION_ID

HOSTILE = "[code]<img src=x onerror=alert(1)>[/code]"
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _forbidden(text: str) -> list:
    """Everything that must not reach ServiceNow, found in ``text``."""
    found = []
    if re.search(r"\[\s*/?\s*code\s*\]", text, re.IGNORECASE):
        found.append("[code] markup")
    if "<" in text or ">" in text:
        found.append("tag brackets")
    for char in set(text) - {"\n"}:  # the agent's own line breaks in the description
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or char in BIDI:
            found.append("U+{:04X}".format(ord(char)))
    return found


def _device_strings(action):
    fields = dict(action.fields)
    fields.update(action.open_fields or {})
    # correlation_id is the lookup key (its form is decided elsewhere), not text for people.
    return [v for k, v in fields.items() if k != "correlation_id"]


# Any code point but the C0 controls and surrogates the schema rejects (mixed in below).
ANY_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    max_size=60,
)
TRICKY = st.sampled_from(
    [
        "[code]",
        "[/code]",
        "[CoDe]",
        "[ code ]",
        "[co",
        "de]",
        "<",
        ">",
        "<b>",
        "\x7f",
        "\x85",
        "\x9b",
        "\u2028",
        "\u2029",
        "\u202e",
        "\u2066",
        "\u200b",
        "\ufeff",
        "\ue000",
        "é",
        "°C",
    ]
)
# What the schema refuses outright: mixed into a few messages, to check it never raises.
RARE = st.sampled_from(["\ud800", "\udfff", "\t", "\x00", "\n"])
PIECES = st.lists(st.one_of(TRICKY, ANY_TEXT), min_size=1, max_size=5).map("".join)
# One message field in ten carries one of them.
MIXED = st.tuples(PIECES, st.integers(0, 9), RARE).map(lambda t: t[0] + t[2] if t[1] == 0 else t[0])
ACCEPTED = []


@settings(max_examples=300, deadline=None)
@given(text=MIXED, limit=st.integers(min_value=1, max_value=300))
def test_clean_text_leaves_nothing_forbidden_and_is_stable(text, limit):
    cleaned = clean_text(text, limit)
    assert _forbidden(cleaned) == []
    assert len(cleaned) <= limit
    assert clean_text(cleaned, limit) == cleaned
    assert cleaned == cleaned.strip() and "  " not in cleaned


def test_clean_text_on_the_reported_examples():
    assert clean_text(HOSTILE) == ""
    assert clean_text("lab " + HOSTILE + " pi") == "lab pi"
    assert clean_text("[co[code]de]x[/co[/code]de]") == "x"
    assert clean_text("pi\x7f\x85one\u2028two\u2029three") == "pi one two three"
    assert clean_text("pi-\u202ekitchen\u202c") == "pi-kitchen"
    assert clean_text("Küche-Pi °C") == "Küche-Pi °C"  # ordinary text is left alone
    # Cut to the limit, the cut marked: text that just fits is whole.
    assert clean_text("pi-kitchen", 10) == "pi-kitchen"
    assert clean_text("pi-kitchens", 10) == "pi-kitche…"
    assert clean_text("pi kitchens", 10) == "pi kitche…"
    assert clean_text("pi  kitchen", 10) == "pi kitchen"  # once its spaces are collapsed
    assert clean_text("") == ""


def test_a_long_hostile_topic_is_named_in_the_log_cut_to_200_characters(fuzz_service, caplog):
    topic = "lab/<b>" + "t" * 300
    assert fuzz_service.handle({"schema": "nonsense"}, topic) is False
    (line,) = [r.getMessage() for r in caplog.records if "rejected a message on" in r.getMessage()]
    named = line.split("rejected a message on ", 1)[1].split(": ", 1)[0]
    assert named == "lab/" + "t" * 195 + "…"


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    settings_ = AnomalySettings.from_mapping(
        {"snowUrl": "http://127.0.0.1:9", "stateDir": str(directory), "deviceId": "pi"}
    )
    service = AnomalyService(settings_, LocalCore().runtime_for(ANOMALY_FUNCTION_ID))
    yield service
    service.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    device=MIXED,
    episode=MIXED,
    unit=MIXED.map(lambda text: text[:16]),
    title=MIXED,
    event=st.sampled_from(["breach", "update", "recovered"]),
    as_json=st.booleans(),
)
def test_the_handler_never_raises_and_queues_only_clean_text(
    fuzz_service, device, episode, unit, title, event, as_json
):
    message = anomaly(event, 0 if event == "breach" else 1, device=device, unit=unit, title=title)
    message["episode_id"] = episode[:89]
    payload = json.dumps(message) if as_json else message  # JSON carries lone surrogates too
    try:
        queued = fuzz_service.handle(payload, "IoTBlog/anomaly")  # must not raise
        pending = fuzz_service.outbox.due(float("inf"))
        assert len(pending) == (1 if queued else 0)
        if queued:
            ACCEPTED.append(episode)
            action = pending[0].action
            for text in _device_strings(action):
                assert _forbidden(text.replace("\n", " ")) == [], text
            # The unit is the metric's own, whatever the message said.
            fields = action.open_fields or action.fields
            assert "63 %RH (limit 50 %RH)" in fields["short_description"]
    finally:
        fuzz_service.outbox._db.execute("DELETE FROM pending")


def test_the_fuzzer_got_hostile_messages_through_the_schema():
    # Guard against a fuzzer whose every message the schema rejects: then it proved nothing.
    assert len(ACCEPTED) >= 50
    assert any(_forbidden(e) for e in ACCEPTED)


def test_a_lone_surrogate_is_rejected_by_the_schema_not_raised_by_the_handler(fuzz_service, caplog):
    message = anomaly(episode="pi:humidity:upper:\ud800")
    with pytest.raises(MessageError, match="episode_id is not valid Unicode"):
        validate_anomaly(message)
    assert fuzz_service.handle(message) is False
    assert fuzz_service.handle(json.dumps(message)) is False  # "\ud800" in JSON text
    assert fuzz_service.handle(anomaly(device="pi\udcff")) is False
    assert "is not valid Unicode" in caplog.text


def test_hostile_text_reaches_servicenow_clean_and_units_come_from_the_metric(
    standin, anomaly_settings, core, clock
):
    service = AnomalyService(anomaly_settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    device = "lab-" + HOSTILE + "\x7f\x85\u2028\u202epi"
    episode = device + ":humidity:upper:1790000000"
    assert service.handle(anomaly(episode=episode, device=device, unit="[code]<b>[/code]"))
    assert service.handle(
        anomaly("update", 1, episode=episode, device=device, unit="<script>", ts=1_790_000_200.0)
    )
    assert service.handle(
        anomaly("recovered", 2, episode=episode, device=device, unit="[code]x", value=40.0)
    )
    assert service.pump() == 3
    (incident,) = standin.incidents()
    texts = [incident["short_description"], incident["description"]]
    texts += [e["value"] for e in incident["_journal"]]
    for text in texts:
        assert _forbidden(text.replace("\n", " ")) == [], text
    assert "lab- pi" in incident["short_description"]  # the readable part of the name stays
    assert "%RH" in incident["short_description"]
    assert all("%RH" in e["value"] for e in incident["_journal"] if e["field"] == "work_notes")
    service.close()


def test_units_in_the_incident_are_the_metrics_own(anomaly_settings):
    event = validate_anomaly(
        anomaly(metric="temperature", value=40.0, peak=41.0, limit=30.0, unit="K")
    )
    action = action_for(event, anomaly_settings)
    assert "40 °C (limit 30 °C)" in action.fields["short_description"]
    assert " K" not in action.fields["description"]


# -- out-of-order events ---------------------------------------------------------------
def test_an_event_older_than_the_last_seen_is_dropped_with_a_log_line(
    standin, anomaly_settings, core, clock, caplog
):
    caplog.set_level(logging.INFO)
    service = AnomalyService(anomaly_settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    assert service.handle(anomaly()) is True
    assert service.handle(anomaly("recovered", 3, value=40.0, ts=1_790_000_400.0)) is True
    assert service.pump() == 2
    # A note from before the recovery arrives late (a core's queue, a retried publish).
    assert service.handle(anomaly("update", 2, ts=1_790_000_300.0)) is False
    assert service.counts["out_of_order"] == 1
    assert "dropped an out-of-order update event (seq 2)" in caplog.text
    assert "seq 3 was already seen" in caplog.text
    assert service.handle(anomaly("recovered", 3, value=40.0)) is False  # a plain repeat
    assert service.counts["duplicates"] == 1 and service.counts["out_of_order"] == 1
    service.close()

    # After a restart the outbox still knows: a late breach would reopen a resolved episode.
    again = AnomalyService(anomaly_settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    assert again.handle(anomaly("update", 1, ts=1_790_000_200.0)) is False
    assert again.summary()["events_out_of_order"] == 1
    assert again.pump() == 0
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    notes = [e["value"] for e in incident["_journal"] if e["field"] == "work_notes"]
    assert not any(n.startswith("Still breaching") for n in notes)
    again.close()


def test_a_late_breach_after_the_recovery_opens_no_second_incident(
    standin, anomaly_settings, core, clock
):
    service = AnomalyService(anomaly_settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    # The recovery overtook its breach: the incident is opened and resolved from it.
    assert service.handle(anomaly("recovered", 2, value=40.0)) is True
    assert service.pump() == 1
    assert service.handle(anomaly("breach", 0)) is False
    assert service.pump() == 0
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    service.close()
