"""What the outbox remembers about unconfirmed requests survives a restart of the agent.

(A create killed in flight and restarted at once is tested with real processes in
test_slow_create_crash.py.)"""

from __future__ import annotations

import sqlite3

from helpers import anomaly

from agent.servicenow.incidents import Action
from agent.servicenow.outbox import SCHEMA, Incident, Outbox
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

CORR = "edge-agent:pi-test:humidity:upper:1790000000"


def start(settings, core, clock):
    """The anomaly function as it starts on a core: a fresh object on the state dir."""
    return anomaly_function.create_app(
        environ={"snowUrl": settings.snow_url, "stateDir": settings.state_dir},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )


def test_after_a_restart_a_note_that_landed_is_not_sent_again(
    standin, anomaly_settings, core, clock
):
    first = start(anomaly_settings, core, clock)
    first.handle(anomaly())
    first.pump()
    standin.faults.fail_after_commit_next(1)  # the note is applied, the answer lost
    first.handle(anomaly("update", seq=1, ts=clock.time() + 3600))
    assert first.pump() == 0
    first.outbox.close()

    again = start(anomaly_settings, core, clock)
    clock.advance(3 * again.client.timeout)
    assert again.pump() == 1
    (incident,) = standin.incidents()
    notes = [e for e in incident["_journal"] if e["value"].startswith("Still breaching")]
    assert len(notes) == 1
    assert [m for m, _, _ in standin.request_log].count("PATCH") == 1
    again.outbox.close()


def test_a_note_that_did_not_land_is_sent_again_once_the_window_has_passed(
    standin, anomaly_settings, core, clock
):
    service = start(anomaly_settings, core, clock)
    service.handle(anomaly())
    service.pump()
    real_update = service.client.update

    def update_dropped_once(sys_id, fields):
        if not dropped:
            dropped.append(True)
            standin.faults.drop_next(1)  # the PATCH's connection is reset unanswered
        return real_update(sys_id, fields)

    dropped = []
    service.client.update = update_dropped_once
    service.handle(anomaly("update", seq=1, ts=clock.time() + 3600))
    assert service.pump() == 0
    waited = service.next_attempt_at() - clock.time()
    assert waited >= 3 * service.client.timeout  # it might still be committing
    clock.advance(waited)
    assert service.pump() == 1
    (incident,) = standin.incidents()
    notes = [e for e in incident["_journal"] if e["value"].startswith("Still breaching")]
    assert len(notes) == 1  # not lost, not doubled
    service.outbox.close()


def test_an_outbox_from_an_older_version_upgrades_in_place(tmp_path):
    path = str(tmp_path / "outbox.sqlite3")
    with sqlite3.connect(path) as db:  # the first release's schema, one action pending
        db.executescript(SCHEMA)
        db.execute(
            "INSERT INTO pending (key, correlation_id, kind, fields, created_at,"
            " next_attempt_at) VALUES ('k#0:breach', ?, 'open', '{}', 1, 1)",
            (CORR,),
        )
    for _ in range(2):  # and opening it again changes nothing
        outbox = Outbox(path)
        assert [q.action.key for q in outbox.due(10)] == ["k#0:breach"]
        outbox.record_create_intent(CORR, 5.0)
        outbox.record_note_attempt("k#1:update", "a" * 32, 3, 6.0)
        assert outbox.create_intent(CORR) == 5.0
        assert outbox.note_attempt("k#1:update").mod_count == 3
        outbox.close()


def test_a_delivery_settles_what_was_in_doubt(tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.sqlite3"))
    outbox.enqueue(Action("note", "k#1:update", CORR, {"work_notes": "x"}), 1.0)
    outbox.record_create_intent(CORR, 1.0)
    outbox.record_note_attempt("k#1:update", "a" * 32, 3, 2.0)
    (queued,) = outbox.due(10)
    outbox.delivered(queued, 3.0, Incident(CORR, "a" * 32, "INC0010001", "1"))
    assert outbox.create_intent(CORR) is None
    assert outbox.note_attempt("k#1:update") is None
    outbox.close()
