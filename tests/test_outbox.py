"""The outbox as the delivery worker sees it: dedup, per-incident order, durability of a queued action."""

from __future__ import annotations

import sqlite3

import pytest

from agent.servicenow import outbox as outbox_module
from agent.servicenow.incidents import Action
from agent.servicenow.outbox import Incident, Outbox

NOW = 1_790_000_000.0


def action(corr: str, seq: int, kind: str = "open") -> Action:
    return Action(kind, "{}#{}:{}".format(corr, seq, kind), corr, {"short_description": corr})


@pytest.fixture
def box(tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.db"))
    yield outbox
    outbox.close()


def test_a_key_is_queued_once_whether_pending_delivered_or_dead(box):
    pending, delivered, dead = action("a", 0), action("b", 0), action("c", 0)
    assert box.enqueue(pending, NOW) and box.enqueue(delivered, NOW) and box.enqueue(dead, NOW)
    assert not box.enqueue(pending, NOW)
    by_key = {q.action.key: q for q in box.due(NOW)}
    box.delivered(by_key[delivered.key], NOW)
    box.dead_letter(by_key[dead.key], NOW, "403 forbidden", 403)
    # A repeated message (MQTT redelivery, a restarted sensor) queues nothing again.
    assert not box.enqueue(delivered, NOW + 1)
    assert not box.enqueue(dead, NOW + 1)
    assert box.counts() == {"pending": 1, "delivered": 1, "dead_letter": 1, "incidents": 0}
    assert [d["key"] for d in box.dead_letters()] == [dead.key]
    assert box.dead_letters()[0]["status"] == 403


def test_only_the_oldest_action_of_an_incident_is_due(box):
    a0, a1, b0 = action("a", 0), action("a", 1, "note"), action("b", 0)
    for queued in (a0, a1, b0):
        box.enqueue(queued, NOW)
    assert [q.action.key for q in box.due(NOW)] == [a0.key, b0.key]
    # The head of "a" waits: its note must not overtake it, "b" goes on.
    head = box.due(NOW)[0]
    box.retry_later(head, NOW + 60, "timeout")
    assert [q.action.key for q in box.due(NOW + 30)] == [b0.key]
    assert box.next_attempt_at() == NOW  # b0
    box.delivered(box.due(NOW + 30)[0], NOW + 30)
    assert box.next_attempt_at() == NOW + 60  # the head of "a", not its note
    (again,) = box.due(NOW + 60)
    assert again.action.key == a0.key and again.attempts == 1
    box.delivered(again, NOW + 60, Incident("a", "sys1", "INC1", "1"))
    assert [q.action.key for q in box.due(NOW + 60)] == [a1.key]
    assert box.incident("a") == Incident("a", "sys1", "INC1", "1")


def test_due_honours_the_retry_time_and_the_limit(box):
    for i in range(5):
        box.enqueue(action("c{}".format(i), 0), NOW + i)
    assert len(box.due(NOW + 2)) == 3
    assert len(box.due(NOW + 10, limit=2)) == 2
    assert box.next_attempt_at() == NOW
    assert Outbox(":memory:").next_attempt_at() is None


def test_actions_a_local_fault_put_off_are_made_due_again_and_no_others(box):
    box.enqueue(action("a", 0), NOW)
    box.enqueue(action("b", 0), NOW)
    box.enqueue(action("c", 0), NOW)
    a, b, c = box.due(NOW)
    box.retry_later(a, NOW + 60, "OperationalError")  # put off by the fault
    box.retry_later(b, NOW + 60, "503")  # waits for ServiceNow
    box.retry_later(c, NOW + 1, "503")
    box.make_due([a.id, c.id], NOW + 5)
    assert sorted(q.action.key for q in box.due(NOW + 5)) == [a.action.key, c.action.key]
    assert box.next_attempt_at() == NOW + 1  # c was due already: not moved later
    assert [q.attempts for q in box.due(NOW + 60)] == [1, 1, 1]  # attempts unchanged


def test_requeued_dead_letters_are_due_again(box):
    box.enqueue(action("a", 0), NOW)
    box.enqueue(action("b", 0), NOW)
    for queued in box.due(NOW):
        box.dead_letter(queued, NOW, "403", 403)
    assert box.requeue_dead_letters(NOW + 5, keys=[action("b", 0).key]) == 1
    assert [q.action.key for q in box.due(NOW + 5)] == [action("b", 0).key]
    assert box.requeue_dead_letters(NOW + 6) == 1
    assert box.counts()["dead_letter"] == 0 and box.counts()["pending"] == 2


def test_old_delivered_keys_are_pruned(box):
    box.enqueue(action("a", 0), NOW)
    box.delivered(box.due(NOW)[0], NOW)
    assert box.prune_delivered(NOW) == 0
    assert box.prune_delivered(NOW + 1) == 1
    assert box.counts()["delivered"] == 0


def test_a_long_error_is_kept_short(box):
    box.enqueue(action("a", 0), NOW)
    (queued,) = box.due(NOW)
    box.retry_later(queued, NOW + 5, "x" * 2000)
    db = sqlite3.connect(box.path)
    (last_error,) = db.execute("SELECT last_error FROM pending").fetchone()
    box.dead_letter(box.due(NOW + 5)[0], NOW, "y" * 2000, None)
    (reason,) = db.execute("SELECT reason FROM dead_letter").fetchone()
    db.close()
    assert len(last_error) == 500 and len(reason) == 500


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement the outbox's own connection runs, in order."""
    seen = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.set_trace_callback(seen.append)
        return db

    monkeypatch.setattr(outbox_module.sqlite3, "connect", connect)
    return seen


def _synchronous_at(statements, index):
    modes = [s for s in statements[:index] if s.upper().startswith("PRAGMA SYNCHRONOUS")]
    return modes[-1].split("=")[1].upper() if modes else None


def _last_commit(statements):
    return max(i for i, s in enumerate(statements) if s.upper() == "COMMIT")


def test_a_queued_action_is_committed_with_a_full_sync(tmp_path, statements):
    # Nothing sends the event again once enqueue() returned, so its commit must
    # reach the disk (synchronous=FULL); the rest of the outbox runs NORMAL.
    box = Outbox(str(tmp_path / "outbox.db"))
    assert _synchronous_at(statements, len(statements)) == "NORMAL"
    statements.clear()
    box.enqueue(action("a", 0), NOW)
    assert _synchronous_at(statements, _last_commit(statements)) == "FULL"
    assert _synchronous_at(statements, len(statements)) == "NORMAL"
    box.record_create_intent("a", NOW)
    insert = max(i for i, s in enumerate(statements) if "INTO create_intents" in s)
    assert _synchronous_at(statements, insert) == "FULL"
    assert _synchronous_at(statements, len(statements)) == "NORMAL"
    assert box.create_intent("a") == NOW
    statements.clear()
    box.delivered(box.due(NOW)[0], NOW)
    assert _synchronous_at(statements, len(statements)) is None  # no sync of its own
    box.close()


def test_the_outbox_is_a_wal_database_that_waits_for_another_writer(box):
    other = sqlite3.connect(box.path, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Another connection (outbox inspect, the guard) holds the write lock for a moment:
    # enqueue waits for it instead of failing with "database is locked".
    other.execute("BEGIN IMMEDIATE")
    import threading

    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        assert box.enqueue(action("a", 0), NOW)
    finally:
        release.join()
        other.close()
    assert box.counts()["pending"] == 1


def test_close_releases_the_file_and_tells_the_owner(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"))
    told = []
    box.on_close.append(lambda: told.append("closed"))
    box.close()
    assert told == ["closed"]
    with pytest.raises(sqlite3.ProgrammingError):
        box.counts()


def _fail_inserts_into(path, table, when="1"):
    """A real write error in the middle of an outbox transaction (as a full disk would give)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER fail_{0} BEFORE INSERT ON {0} WHEN {1}"
        " BEGIN SELECT RAISE(ABORT, 'no'); END".format(table, when)
    )
    db.close()


@pytest.mark.parametrize("outcome", ["delivered", "dead_letter"])
def test_an_outcome_that_cannot_be_recorded_leaves_the_action_pending(box, outcome):
    box.enqueue(action("a", 0), NOW)
    (queued,) = box.due(NOW)
    _fail_inserts_into(box.path, outcome)
    with pytest.raises(sqlite3.DatabaseError):
        if outcome == "delivered":
            box.delivered(queued, NOW)
        else:
            box.dead_letter(queued, NOW, "403", 403)
    # Neither half of the move happened: the action is still there, still due.
    assert [q.action.key for q in box.due(NOW)] == [queued.action.key]


def test_a_requeue_that_fails_keeps_the_dead_letters(box):
    box.enqueue(action("a", 0), NOW)
    box.enqueue(action("b", 0), NOW)
    for queued in box.due(NOW):
        box.dead_letter(queued, NOW, "403", 403)
    # The second of the two fails: the first must not be half moved either.
    _fail_inserts_into(box.path, "pending", when="NEW.key = 'b#0:open'")
    with pytest.raises(sqlite3.DatabaseError):
        box.requeue_dead_letters(NOW)
    assert len(box.dead_letters()) == 2 and box.due(NOW) == []


def test_due_gives_at_most_fifty_at_a_time_by_default(box):
    for i in range(60):
        box.enqueue(action("c{}".format(i), 0), NOW)
    assert len(box.due(NOW)) == 50


def test_keys_for_an_incident_cover_every_table_and_no_other_incident(box):
    box.enqueue(action("a", 0), NOW)
    box.enqueue(action("a", 1, "note"), NOW)
    box.enqueue(action("ab", 0), NOW)
    box.delivered(box.due(NOW)[0], NOW)
    assert sorted(box.keys_for("a")) == ["a#0:open", "a#1:note"]
    assert box.progress() == (2, 3)


def test_rows_restored_into_a_fresh_outbox_are_synced_and_keep_their_order(tmp_path, statements):
    old = Outbox(str(tmp_path / "old.db"))
    for i in range(3):
        old.enqueue(action("a", i, "note" if i else "open"), NOW)
    snapshot = outbox_module.read_tables(sqlite3.connect(old.path))
    old.close()
    fresh = Outbox(str(tmp_path / "state" / "new.db"))  # its directory is created
    statements.clear()
    assert fresh.restore(snapshot)["pending"] == 3
    assert _synchronous_at(statements, _last_commit(statements)) == "FULL"
    assert _synchronous_at(statements, len(statements)) == "NORMAL"
    assert fresh.progress() == (3, 3)
    assert [q.action.key for q in fresh.due(NOW)] == ["a#0:open"]
    empty = Outbox(str(tmp_path / "empty.db"))
    assert empty.restore({"sequence": 0}) == {t: 0 for t in outbox_module.TABLES}
    assert empty.progress() == (0, 0)
    fresh.close()
    empty.close()


def test_queued_actions_and_incidents_are_values(box):
    import dataclasses

    box.enqueue(action("a", 0), NOW)
    (queued,) = box.due(NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        queued.attempts = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        Incident("a", "s", "INC1", "1").state = "7"
    box.record_note_attempt("k", "s", 3, NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.note_attempt("k").mod_count = 4


def test_restore_raises_the_id_sequence_to_the_markers(box):
    box.enqueue(action("a", 0), NOW)
    box.restore({"sequence": 0}, min_sequence=10)
    assert box.progress() == (1, 10)
    box.restore({"sequence": 4}, min_sequence=2)  # never lowered
    assert box.progress() == (1, 10)
    box.enqueue(action("b", 0), NOW)
    assert box.progress() == (2, 11)


def test_a_restore_that_fails_halfway_adds_nothing(tmp_path):
    old = Outbox(str(tmp_path / "old.db"))
    old.enqueue(action("a", 0), NOW)
    old.delivered(old.due(NOW)[0], NOW, Incident("a", "s", "INC1", "1"))
    old.enqueue(action("a", 1, "note"), NOW)
    snapshot = outbox_module.read_tables(sqlite3.connect(old.path))
    old.close()
    fresh = Outbox(str(tmp_path / "new.db"))
    # Not a constraint (which restore skips row by row) but an error of the write itself.
    db = sqlite3.connect(fresh.path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER broken AFTER INSERT ON incidents BEGIN INSERT INTO gone VALUES (1); END"
    )
    db.close()
    with pytest.raises(sqlite3.DatabaseError):
        fresh.restore(snapshot)
    assert fresh.counts() == {"pending": 0, "delivered": 0, "dead_letter": 0, "incidents": 0}
    fresh.close()


def test_garbled_rows_are_not_restored():
    box = Outbox(":memory:")
    columns = ["id", "key", "correlation_id", "kind", "fields", "created_at", "next_attempt_at"]
    rows = [
        (1, "a#0:open", "a", "open", '{"x": "1"}', NOW, NOW),
        (2, "b#0:open", "b", "open", "{garbled", NOW, NOW),
        (3, "c#0:open", "c", "open", "[1]", NOW, NOW),
    ]
    assert box.restore({"pending": (columns, rows), "sequence": 3})["pending"] == 1
    assert [q.action.key for q in box.due(NOW)] == ["a#0:open"]


def test_a_replaced_file_gets_a_fresh_outbox_with_the_rows_or_memory_until_it_can(tmp_path):
    import os
    import shutil

    path = str(tmp_path / "outbox.db")
    box = Outbox(path)
    box.enqueue(action("a", 0), NOW)

    def blocked():
        # Something that is not a database file takes the path: no fresh file possible.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.rename(path + suffix, path + suffix + ".aside")
        os.mkdir(path)
        return "moved"

    assert box.replace_file(blocked) == (
        "moved",
        {t: (1 if t == "pending" else 0) for t in outbox_module.TABLES},
    )
    assert box.in_memory and box.progress() == (1, 1)
    box.enqueue(action("b", 0), NOW)

    assert box.replace_file(lambda: shutil.rmtree(path))[0] is None
    assert not box.in_memory
    box.close()
    again = Outbox(path)
    assert [q.action.key for q in again.due(NOW)] == ["a#0:open", "b#0:open"]
    assert again.progress() == (2, 2)
    again.close()


def test_a_replaced_empty_outbox_stays_empty(tmp_path):
    import os

    box = Outbox(str(tmp_path / "outbox.db"))
    box.replace_file(lambda: os.rename(box.path, box.path + ".aside"))
    assert box.progress() == (0, 0) and not box.in_memory
    box.close()


def test_a_create_intent_is_remembered_until_cleared(box):
    assert box.create_intent("a") is None
    box.record_create_intent("a", NOW)
    assert box.create_intent("a") == NOW
    box.clear_create_intent("a")
    assert box.create_intent("a") is None


def test_restoring_a_snapshot_without_a_sequence_keeps_ids_from_one(box):
    box.restore({})
    assert box.progress() == (0, 0)
    box.enqueue(action("a", 0), NOW)
    assert box.due(NOW)[0].id == 1


def test_a_wait_written_before_the_clock_stepped_back_keeps_only_its_length(box):
    """Written by a process before NTP stepped the wall clock back an hour, read after a
    restart: each retry waits its own back-off from now, a create in doubt its window."""
    waiting, fresh = action("a", 0), action("b", 0)
    box.enqueue(waiting, NOW)
    (queued,) = box.due(NOW)
    box.retry_later(queued, NOW + 300, "503", NOW)  # a 300 s back-off, decided at NOW
    box.record_create_intent("a", NOW)
    earlier = NOW - 3600 + 10  # the next start, after the step
    box.enqueue(fresh, earlier)
    assert box.rebase_after_clock_step(earlier) == 1  # only the one written before the step
    assert box.next_attempt_at() == earlier  # the fresh one is due at once
    assert [q.action.key for q in box.due(earlier + 299)] == [fresh.key]
    assert {q.action.key for q in box.due(earlier + 300)} == {waiting.key, fresh.key}
    assert box.create_intent("a") == earlier
    assert box.rebase_after_clock_step(earlier + 5) == 0  # once moved, not again


def test_an_outbox_made_before_scheduled_at_existed_gets_the_column(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(outbox_module.SCHEMA.replace(",\n    scheduled_at REAL", ""))
    db.execute(
        "INSERT INTO pending (key, correlation_id, kind, fields, created_at, next_attempt_at)"
        " VALUES ('a#0:open', 'a', 'open', '{}', ?, ?)",
        (NOW, NOW + 60),
    )
    db.commit()
    db.close()
    box = Outbox(path)
    try:
        assert box.rebase_after_clock_step(NOW - 3600) == 1
        assert box.next_attempt_at() == NOW - 3600 + 60
    finally:
        box.close()
