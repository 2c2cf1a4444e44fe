"""Judging readings: hysteresis, debounce, episodes, restarts."""

from __future__ import annotations

import re

from agent.config import MetricLimits, SensorSettings
from agent.judge import Judge
from agent.sensors.base import Reading

HUMID = MetricLimits("humidity", upper=50.0, lower=None, hysteresis=1.0)
TEMP = MetricLimits("temperature", upper=30.0, lower=10.0, hysteresis=1.0)


def feed(judge, values, metric="humidity", start=1000.0, step=5.0):
    events = []
    for i, value in enumerate(values):
        kwargs = {"temperature": None, "humidity": None, metric: value}
        events += judge.observe(Reading(ts=start + i * step, **kwargs))
    return events


def test_breach_fires_only_after_debounce_and_beyond_the_band():
    judge = Judge("pi", [HUMID], debounce_samples=3)
    assert feed(judge, [52, 52]) == []
    events = feed(judge, [52], start=1010.0)
    assert [e.event for e in events] == ["breach"]
    assert re.fullmatch(r"pi:humidity:upper:1000-[0-9a-f]{8}", events[0].episode_id)
    assert events[0].started_at == 1000.0


def test_values_inside_the_hysteresis_band_never_open_an_episode():
    judge = Judge("pi", [HUMID], debounce_samples=1)
    # Hovering around the limit, always within limit ± hysteresis.
    assert feed(judge, [49.2, 50.8, 50.9, 49.1, 50.5] * 40) == []


def test_a_broken_run_resets_the_debounce():
    judge = Judge("pi", [HUMID], debounce_samples=3)
    assert feed(judge, [52, 52, 49, 52, 52, 50, 52, 52]) == []


def test_recovery_needs_debounce_below_the_band_and_ends_the_episode():
    judge = Judge("pi", [HUMID], debounce_samples=3)
    events = feed(judge, [55, 55, 55, 50.5, 50.5, 48, 48, 50, 48, 48, 48])
    assert [e.event for e in events] == ["breach", "recovered"]
    recovered = events[-1]
    assert recovered.peak == 55 and recovered.seq == 1
    assert recovered.episode_id == events[0].episode_id


def test_a_new_breach_after_recovery_is_a_new_episode():
    judge = Judge("pi", [HUMID], debounce_samples=2)
    events = feed(judge, [55, 55, 40, 40, 55, 55])
    assert [e.event for e in events] == ["breach", "recovered", "breach"]
    assert events[0].episode_id != events[2].episode_id


def test_updates_are_rate_limited_by_the_renotify_interval():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=60)
    events = feed(judge, [55 + i * 0.1 for i in range(60)])  # 5 minutes at 5 s
    kinds = [e.event for e in events]
    assert kinds[0] == "breach"
    assert kinds.count("update") == 4  # at 60, 120, 180, 240 s
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]


def test_missing_readings_neither_open_nor_close():
    judge = Judge("pi", [HUMID], debounce_samples=2)
    assert feed(judge, [55, None, None]) == []
    events = feed(judge, [55], start=1100.0)
    assert [e.event for e in events] == ["breach"]
    assert feed(judge, [None] * 20, start=1200.0) == []
    assert judge.open_episodes() == {"humidity": events[0].episode_id}


def test_lower_limit_and_independent_metrics():
    judge = Judge("pi", [HUMID, TEMP], debounce_samples=1)
    events = judge.observe(Reading(ts=1.0, temperature=5.0, humidity=60.0))
    assert sorted((e.metric, e.bound) for e in events) == [
        ("humidity", "upper"),
        ("temperature", "lower"),
    ]
    # Both limits judged independently: a second metric does not overwrite the first.
    assert len({e.episode_id for e in events}) == 2


def test_debounce_seconds_must_also_hold():
    judge = Judge("pi", [HUMID], debounce_samples=1, debounce_seconds=30)
    assert feed(judge, [55] * 6) == []  # 0..25 s
    assert [e.event for e in feed(judge, [55], start=1030.0)] == ["breach"]


def test_a_snapshot_continues_the_episode_in_a_new_judge():
    first = Judge("pi", [HUMID], debounce_samples=2)
    opened = feed(first, [55, 55])
    assert [e.event for e in opened] == ["breach"]
    # The sensor function restarts mid-episode: no second breach, the same episode recovers.
    second = Judge("pi", [HUMID], debounce_samples=2)
    second.restore(first.snapshot())
    events = feed(second, [56, 56, 40, 40], start=2000.0)
    assert [e.event for e in events] == ["recovered"]
    assert events[0].episode_id == opened[0].episode_id
    assert second.snapshot() == {}


def test_malformed_snapshots_are_skipped_with_a_log(caplog):
    judge = Judge("pi", [HUMID])
    judge.restore({"humidity": {"episode_id": "x"}, "wind": {}, "temperature": 3})
    assert judge.open_episodes() == {}
    assert "malformed saved episode for humidity" in caplog.text


def test_a_long_device_name_still_fits_servicenows_correlation_id():
    from agent.servicenow.incidents import correlation_id
    from agent.servicenow.query_safe import is_query_safe

    name = "factory-7-building-c-floor-3-cold-room-12-raspberry-pi-sense-hat-unit-0042"
    judge = Judge(name, [HUMID], debounce_samples=1)
    (event,) = feed(judge, [60])
    assert len(event.episode_id) <= 89
    assert event.episode_id.startswith(name[:31] + "~")
    other = Judge(name[:-1] + "3", [HUMID], debounce_samples=1)
    other_id = feed(other, [60])[0].episode_id
    assert other_id != event.episode_id  # still unique per device
    # The "~" is not inert in an encoded query: the correlation id maps it (and adds a
    # hash), still unique, within the column's 100 characters, nothing cut off.
    corr = correlation_id(event.episode_id)
    assert corr != correlation_id(other_id)
    assert len(corr) <= 100 and is_query_safe(corr)
    assert corr.startswith("edge-agent:" + name[:31] + "_") and ":humidity:upper:" in corr


def test_event_message_follows_the_schema():
    from agent.schema import validate_anomaly

    judge = Judge("pi", [HUMID], debounce_samples=1)
    (event,) = feed(judge, [57.5])
    message = validate_anomaly(event.to_message())
    assert message["unit"] == "%RH" and message["title"] == "Humidity above limit"
    assert message["limit"] == 50.0 and message["value"] == 57.5


def test_default_settings_build_a_judge_with_both_limits():
    settings = SensorSettings.from_mapping({})
    assert [lim.metric for lim in settings.limits] == ["temperature", "humidity"]
    assert settings.debounce_samples == 3 and settings.period == 5.0


# -- limits changed while it runs ---------------------------------------------------------


def reconfigure(judge, *limits, samples=3, seconds=0.0, renotify=1800.0):
    judge.reconfigure(limits, samples, seconds, renotify)


def test_raising_the_limit_mid_episode_recovers_it_after_the_debounce():
    judge = Judge("pi", [HUMID], debounce_samples=3)
    [breach] = feed(judge, [60, 60, 60])
    reconfigure(judge, MetricLimits("humidity", 70.0, None, 1.0))
    assert feed(judge, [60, 60], start=1015.0) == []  # debounce: two readings are not enough
    [recovered] = feed(judge, [60], start=1025.0)
    assert recovered.event == "recovered" and recovered.episode_id == breach.episode_id
    assert recovered.limit == 70.0 and recovered.seq == 1


def test_a_change_that_keeps_the_value_beyond_the_band_continues_the_episode():
    judge = Judge("pi", [HUMID], debounce_samples=2, renotify_seconds=0)
    [breach] = feed(judge, [60, 60])
    reconfigure(judge, MetricLimits("humidity", 55.0, None, 1.0), samples=2, renotify=0)
    assert feed(judge, [60] * 10, start=1010.0) == []  # no second breach, no recovery
    assert judge.open_episodes() == {"humidity": breach.episode_id}


def test_lowering_the_limit_opens_an_episode_after_the_debounce():
    judge = Judge("pi", [HUMID], debounce_samples=3)
    assert feed(judge, [45, 45]) == []
    reconfigure(judge, MetricLimits("humidity", 40.0, None, 1.0))
    assert feed(judge, [45, 45], start=1010.0) == []
    [breach] = feed(judge, [45], start=1020.0)
    assert breach.event == "breach" and breach.limit == 40.0
    assert breach.started_at == 1010.0  # the first reading beyond the new band


def test_a_changed_debounce_counts_the_readings_already_under_way():
    judge = Judge("pi", [HUMID], debounce_samples=5)
    assert feed(judge, [60, 60]) == []
    reconfigure(judge, HUMID, samples=3)
    assert [e.event for e in feed(judge, [60], start=1010.0)] == ["breach"]


def test_an_open_episode_of_a_metric_whose_limit_was_removed_recovers():
    pressure = MetricLimits("pressure", 1020.0, None, 1.0)
    judge = Judge("pi", [HUMID, pressure], debounce_samples=2)
    [breach] = feed(judge, [1030, 1030], metric="pressure")
    reconfigure(judge, HUMID, samples=2)  # pressureLimit back to unset
    events = feed(judge, [1030, 1030, 1030], metric="pressure", start=1010.0)
    assert [e.event for e in events] == ["recovered"]
    assert events[0].episode_id == breach.episode_id and events[0].limit == 1020.0
    assert feed(judge, [1100] * 5, metric="pressure", start=1100.0) == []  # nothing watched now


def test_a_renotify_change_applies_to_the_open_episode():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=3600)
    feed(judge, [60])
    reconfigure(judge, HUMID, samples=1, renotify=60)
    kinds = [e.event for e in feed(judge, [60] * 13, start=1005.0)]  # one minute
    assert kinds == ["update"]


# -- the exact edges of the band and the intervals (killed mutants: see ./dev mutate) ------


def test_a_value_exactly_on_the_band_edge_does_not_breach():
    judge = Judge("pi", [TEMP], debounce_samples=1)
    # upper 30 + 1 and lower 10 - 1 are still inside: a breach is strictly beyond.
    assert feed(judge, [31.0, 9.0] * 5, metric="temperature") == []
    assert [e.bound for e in feed(judge, [31.01], metric="temperature", start=2000.0)] == ["upper"]


def test_a_lower_breach_recovers_only_strictly_above_the_band():
    judge = Judge("pi", [TEMP], debounce_samples=2)
    [breach] = feed(judge, [8, 8], metric="temperature")
    assert breach.bound == "lower" and breach.limit == 10.0 and breach.peak == 8
    # Inside the band (9..11), and exactly on its edge: the episode stays open.
    assert feed(judge, [10.0, 10.5, 11.0, 11.0, 9.5], metric="temperature", start=1010.0) == []
    events = feed(judge, [11.5, 11.5], metric="temperature", start=1040.0)
    assert [e.event for e in events] == ["recovered"]
    assert events[0].episode_id == breach.episode_id and events[0].peak == 8


def test_an_upper_breach_recovers_only_strictly_below_the_band():
    judge = Judge("pi", [HUMID], debounce_samples=2)
    [breach] = feed(judge, [55, 55])
    # 49..51 is the band: exactly 49 is not back inside.
    assert feed(judge, [50.5, 50.0, 49.0, 49.0, 50.9], start=1010.0) == []
    assert [e.event for e in feed(judge, [48.9, 48.9], start=1040.0)] == ["recovered"]


def test_a_recovery_interrupted_by_a_breaching_value_starts_counting_again():
    judge = Judge("pi", [HUMID], debounce_samples=3, debounce_seconds=10)
    feed(judge, [55, 55, 55])
    # Two readings back inside, one beyond again, then two inside: never three in a row.
    assert feed(judge, [45, 45, 55, 45, 45], start=1015.0) == []
    [recovered] = feed(judge, [45], start=1040.0)
    # The count restarted at 1030: the recovery fires at the third, 10 s later.
    assert recovered.event == "recovered" and recovered.ts == 1040.0


def test_a_recovery_waits_for_the_debounce_seconds_from_its_first_reading():
    judge = Judge("pi", [HUMID], debounce_samples=1, debounce_seconds=20)
    feed(judge, [55] * 5)  # 1000..1020: breach at 1020
    assert feed(judge, [45, 45, 45, 45], start=1025.0) == []  # 1025..1040: 15 s
    [recovered] = feed(judge, [45], start=1045.0)
    assert recovered.event == "recovered"


def test_an_update_comes_exactly_when_the_renotify_interval_has_passed():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=60)
    events = feed(judge, [55] * 26)  # 1000..1125 s
    assert [(e.event, e.ts) for e in events] == [
        ("breach", 1000.0),
        ("update", 1060.0),
        ("update", 1120.0),
    ]
    assert [e.seq for e in events] == [0, 1, 2]


def test_a_renotify_interval_of_zero_sends_no_updates():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    assert [e.event for e in feed(judge, [55] * 50)] == ["breach"]


def test_the_peak_is_the_most_extreme_value_of_the_episode():
    judge = Judge("pi", [TEMP], debounce_samples=2)
    events = feed(judge, [5, 3, 4, 2.5, 6, 12, 12], metric="temperature")
    assert [(e.event, e.peak) for e in events] == [("breach", 3), ("recovered", 2.5)]
    upper = Judge("pi", [HUMID], debounce_samples=2)
    events = feed(upper, [56, 58, 57, 60, 52, 40, 40])
    assert [(e.event, e.peak) for e in events] == [("breach", 58), ("recovered", 60)]


def test_the_event_says_which_limit_and_title():
    judge = Judge("pi", [TEMP], debounce_samples=1)
    [breach] = feed(judge, [5], metric="temperature")
    assert breach.title == "Temperature below limit" and breach.limit == 10.0
    [recovered] = feed(judge, [20], metric="temperature", start=2000.0)
    assert recovered.title == "Temperature back within limit" and recovered.limit == 10.0


def test_a_device_id_of_exactly_the_maximum_length_is_kept_whole():
    from agent.judge import MAX_DEVICE_IN_ID

    name = "d" * MAX_DEVICE_IN_ID
    [event] = feed(Judge(name, [HUMID], debounce_samples=1), [60])
    assert event.episode_id.startswith(name + ":humidity:upper:1000-")
    longer = "d" * (MAX_DEVICE_IN_ID + 1)
    [event] = feed(Judge(longer, [HUMID], debounce_samples=1), [60])
    assert event.episode_id.split(":")[0] != longer and "~" in event.episode_id
    assert len(event.episode_id.split(":")[0]) == MAX_DEVICE_IN_ID


def test_a_saved_episode_of_a_metric_no_longer_watched_is_not_continued():
    first = Judge("pi", [HUMID, TEMP], debounce_samples=1)
    feed(first, [5], metric="temperature")
    saved = first.snapshot()
    assert set(saved) == {"temperature"}
    judge = Judge("pi", [HUMID], debounce_samples=1)
    judge.restore(saved)
    assert judge.open_episodes() == {} and judge.snapshot() == {}
    judge.restore({"humidity": "not a dict"})
    assert judge.open_episodes() == {}


def test_a_continued_episode_keeps_its_seq_and_renotify_time():
    first = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=60)
    feed(first, [60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60])  # update at 1060
    second = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=60)
    second.restore(first.snapshot())
    events = feed(second, [60] * 13, start=1065.0)
    assert [(e.event, e.seq, e.ts) for e in events] == [("update", 2, 1120.0)]
    assert events[0].started_at == 1000.0 and events[0].peak == 60


def test_a_continued_episode_recovers_after_the_full_debounce():
    first = Judge("pi", [HUMID], debounce_samples=2)
    feed(first, [55, 55])
    second = Judge("pi", [HUMID], debounce_samples=2)
    second.restore(first.snapshot())
    # The first reading after the restart is already back inside: one is not enough.
    assert feed(second, [40], start=2000.0) == []
    assert [e.event for e in feed(second, [40], start=2005.0)] == ["recovered"]


def test_the_default_judge_debounces_three_samples_and_renotifies_every_half_hour():
    judge = Judge("pi", [HUMID])
    assert feed(judge, [55, 55]) == []
    events = feed(judge, [55] * 400, start=1010.0, step=5.0)  # 1010..3005
    assert [(e.event, e.ts) for e in events] == [("breach", 1010.0), ("update", 2810.0)]


def test_a_reconfigured_debounce_of_zero_means_at_once():
    judge = Judge("pi", [HUMID], debounce_samples=3, debounce_seconds=30)
    reconfigure(judge, HUMID, samples=0, seconds=-1)
    assert [e.event for e in feed(judge, [55])] == ["breach"]


def test_a_renotify_interval_of_a_second_updates_on_every_reading():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=1)
    assert [e.event for e in feed(judge, [55] * 4)] == ["breach", "update", "update", "update"]


def test_an_event_is_a_value_that_cannot_be_changed():
    import pytest

    [event] = feed(Judge("pi", [HUMID], debounce_samples=1), [55])
    with pytest.raises(AttributeError):
        event.value = 1.0


def test_values_in_events_are_rounded_to_three_decimals():
    judge = Judge("pi", [HUMID], debounce_samples=1)
    [event] = feed(judge, [55.123456])
    assert event.value == 55.123 and event.peak == 55.123
    assert event.to_message()["value"] == 55.123


def test_an_episode_restored_where_its_side_has_no_limit_recovers_with_limit_zero():
    first = Judge("pi", [TEMP], debounce_samples=1)
    feed(first, [40], metric="temperature")
    lower_only = MetricLimits("temperature", upper=None, lower=10.0, hysteresis=1.0)
    judge = Judge("pi", [lower_only], debounce_samples=1)
    judge.restore(first.snapshot())
    [recovered] = feed(judge, [40], metric="temperature", start=2000.0)
    assert recovered.event == "recovered" and recovered.limit == 0.0


def test_a_wall_clock_stepped_back_mid_episode_changes_no_interval():
    """NTP steps the wall clock back an hour between two readings: debounce, renotify and
    the episode's duration run on the monotonic time the judge is given."""
    judge = Judge("pi", [HUMID], debounce_samples=2, debounce_seconds=5, renotify_seconds=60)
    wall, mono, events = 1_790_000_000.0, 500.0, []
    for i, value in enumerate([60, 60, 60, 60, 40, 40, 40]):
        if i == 3:
            wall -= 3600.0  # the step: readings from now on are stamped an hour earlier
        events += judge.observe(Reading(wall, None, value), now=mono)
        wall, mono = wall + 30.0, mono + 30.0
    assert [e.event for e in events] == ["breach", "update", "recovered"]
    breach, update, recovered = events
    assert recovered.ts < breach.started_at  # the wall times say it ended before it began
    assert recovered.duration == 150.0  # ...the monotonic clock says two and a half minutes
    assert update.duration == 90.0  # one renotify interval after the breach (at 30 s)


def test_a_restored_episode_keeps_its_age_when_the_clock_was_set_back_while_down():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    (breach,) = judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    saved = judge.snapshot(now=160.0, wall=1_790_000_060.0)
    again = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    # A reboot (monotonic from 0) with the wall clock an hour earlier than at the save.
    again.restore(saved, now=3.0, wall=1_790_000_060.0 - 3600.0)
    (recovered,) = again.observe(Reading(1_789_996_500.0, None, 40.0), now=13.0)
    assert recovered.episode_id == breach.episode_id
    assert recovered.duration == 70.0  # 60 s watched before, 10 s after; the step adds nothing


def test_episodes_started_in_the_same_second_after_reboots_have_different_ids():
    """A Pi without a real-time clock boots at 1970 every time: the same start second
    must not give the same id (the outbox would drop the second episode as a repeat)."""
    ids = set()
    for _boot in range(50):
        judge = Judge("pi", [HUMID], debounce_samples=1)  # a fresh process each boot
        (event,) = feed(judge, [60], start=12.0)
        ids.add(event.episode_id)
    assert len(ids) == 50
    assert all(len(i) <= 89 for i in ids)


def test_an_episode_begun_on_an_unset_clock_says_so_after_a_restart_too():
    # A Pi without an RTC breaches before NTP: its incident must not state a 1970 start,
    # also when the sensor function restarted mid-episode and the recovery comes later.
    first = Judge("pi", [HUMID], debounce_samples=1)
    (breach,) = first.observe(Reading(ts=60.0, temperature=None, humidity=55), clock_unsynced=True)
    assert breach.start_clock_unsynced is True
    second = Judge("pi", [HUMID], debounce_samples=1)
    second.restore(first.snapshot())
    (recovered,) = second.observe(
        Reading(ts=1_790_000_000.0, temperature=None, humidity=40), now=120.0
    )
    assert recovered.event == "recovered" and recovered.start_clock_unsynced is True


def test_the_state_file_keeps_the_last_notification_as_a_wall_time():
    # The state file is read by people and by the previous release (after a rollback), which
    # take last_notified as a wall time; ages on the monotonic clock are kept beside it.
    judge = Judge("pi", [HUMID], debounce_samples=1)
    judge.observe(Reading(ts=1000.0, temperature=None, humidity=55), now=50.0)
    saved = judge.snapshot(now=80.0, wall=1_790_000_030.0)["humidity"]
    assert saved["last_notified"] == 1_790_000_000.0
    assert saved["since_notified"] == 30.0 and saved["saved_at"] == 1_790_000_030.0


def _restored_from(saved, now, wall, renotify=0):
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=renotify)
    judge.restore(saved, now=now, wall=wall)
    return judge


def test_a_restored_episode_counts_the_time_the_device_was_down():
    # Power off for ten minutes mid-episode: the incident's duration says how long the
    # humidity was out of range as far as anyone knows, watched or not.
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    saved = judge.snapshot(now=160.0, wall=1_790_000_060.0)
    again = _restored_from(saved, now=3.0, wall=1_790_000_060.0 + 600.0)
    (recovered,) = again.observe(Reading(1_790_000_670.0, None, 40.0), now=13.0)
    assert recovered.duration == 670.0  # 60 s before, 600 s down, 10 s after


def test_a_gap_of_a_month_or_more_between_save_and_restart_counts_as_a_clock_step():
    # A Pi without an RTC that booted at 1970 and then got NTP time can see any gap; a
    # month or more is not believed as downtime. Just under a month is.
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    saved = judge.snapshot(now=160.0, wall=1_790_000_060.0)
    month = 30 * 24 * 3600.0
    for gap, duration in ((month, 70.0), (month - 1.0, month - 1.0 + 70.0)):
        again = _restored_from(saved, now=3.0, wall=1_790_000_060.0 + gap)
        (recovered,) = again.observe(Reading(1_790_000_070.0 + gap, None, 40.0), now=13.0)
        assert recovered.duration == duration, gap


def test_a_restart_within_the_same_wall_second_adds_no_downtime():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    saved = judge.snapshot(now=160.0, wall=1_790_000_060.0)
    again = _restored_from(saved, now=3.0, wall=1_790_000_060.0)
    (recovered,) = again.observe(Reading(1_790_000_070.0, None, 40.0), now=13.0)
    assert recovered.duration == 70.0


def test_an_episode_saved_the_moment_it_opened_keeps_its_true_age_and_renotify_time():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=60)
    (breach,) = judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    assert breach.duration == 0.0  # the first breaching reading opens it: no time has passed
    saved = judge.snapshot(now=100.0, wall=1_790_000_000.0)
    again = _restored_from(saved, now=5.0, wall=1_790_000_000.0, renotify=60)
    updates = []
    for second in range(0, 70, 5):
        updates += again.observe(Reading(1_790_000_000.0 + second, None, 60.0), now=5.0 + second)
    assert [(e.event, e.ts, e.duration) for e in updates] == [("update", 1_790_000_060.0, 60.0)]


def test_a_state_file_of_the_previous_release_continues_with_its_age_from_wall_times():
    # The previous release saved no ages (nor, before it, the save's time): the age and the
    # time since the last notification then come from the wall times it did save.
    previous = {
        "humidity": {
            "episode_id": "pi:humidity:upper:1000-0a1b2c3d",
            "bound": "upper",
            "seq": 2,
            "started_at": 1000.0,
            "peak": 61.0,
            "last_notified": 1040.0,
            "saved_at": 1060.0,
        }
    }
    judge = _restored_from(previous, now=None, wall=None, renotify=30)
    (update,) = judge.observe(Reading(1070.0, None, 60.0))
    assert (update.event, update.seq, update.duration) == ("update", 3, 70.0)
    without_save_time = {"humidity": dict(previous["humidity"])}
    del without_save_time["humidity"]["saved_at"]
    judge = _restored_from(without_save_time, now=None, wall=None, renotify=30)
    assert judge.observe(Reading(1050.0, None, 60.0)) == []  # 10 s after the last notice
    (update,) = judge.observe(Reading(1070.0, None, 60.0))
    assert update.duration == 70.0


def test_a_saved_start_later_than_the_last_notice_gives_no_negative_age():
    # The wall clock was set back between the breach and its last notice: the age from the
    # wall times would be negative; it counts as none.
    saved = {
        "humidity": {
            "episode_id": "pi:humidity:upper:2000-0a1b2c3d",
            "bound": "upper",
            "seq": 1,
            "started_at": 2000.0,
            "peak": 61.0,
            "last_notified": 1000.0,
        }
    }
    judge = _restored_from(saved, now=None, wall=None)
    (recovered,) = judge.observe(Reading(1010.0, None, 40.0))
    assert recovered.duration == 10.0


def test_durations_are_rounded_to_milliseconds():
    judge = Judge("pi", [HUMID], debounce_samples=1, renotify_seconds=0)
    judge.observe(Reading(1_790_000_000.0, None, 60.0), now=100.0)
    (recovered,) = judge.observe(Reading(1_790_000_001.0, None, 40.0), now=100.12345)
    assert recovered.duration == 0.123


def test_the_clock_flags_are_in_a_message_only_when_true():
    # Consumers of the anomaly topic that predate the flags see the same messages as before.
    synced = Judge("pi", [HUMID], debounce_samples=1)
    (breach,) = synced.observe(Reading(1_790_000_000.0, None, 60.0))
    message = breach.to_message()
    assert "clock_unsynced" not in message and "start_clock_unsynced" not in message
    unsynced = Judge("pi", [HUMID], debounce_samples=1)
    (breach,) = unsynced.observe(Reading(60.0, None, 60.0), clock_unsynced=True)
    message = breach.to_message()
    assert message["clock_unsynced"] is True and message["start_clock_unsynced"] is True


def test_episode_ids_begin_with_the_prefix_the_outbox_is_searched_for():
    # After a torn state file the sensor function finds its open incidents in the outbox by
    # this prefix: it must be how its own episode ids begin, and no other device's.
    judge = Judge("pi-kitchen", [HUMID], debounce_samples=1)
    (breach,) = judge.observe(Reading(1_790_000_000.0, None, 60.0))
    assert judge.episode_prefix() == "pi-kitchen:"
    assert breach.episode_id.startswith(judge.episode_prefix())
    assert not breach.episode_id.startswith(Judge("pi", [HUMID]).episode_prefix())
