"""Which edition is due when: the real send trigger, with "now" passed in, never the clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import scheduling
from digest.config import Config, Newsletter, Schedule, duration
from digest.errors import DigestError

BERLIN = ZoneInfo("Europe/Berlin")
GRACE = timedelta(hours=6)


def reconciled(trigger, zone: ZoneInfo, start: datetime, end: datetime, every: timedelta,
               made: set[str] | None = None) -> list[str]:
    """The periods a reconcile every `every` from `start` to `end` makes, in order."""
    made = set() if made is None else made
    order = []
    moment = start
    while moment < end:
        due = scheduling.due_period(trigger, zone, moment, GRACE)
        if due is not None and due not in made:
            made.add(due)
            order.append(due)
        moment += every
    return order


@pytest.mark.parametrize("first_day", [date(2026, 3, 27), date(2026, 10, 23)],
                         ids=["spring-forward", "fall-back"])
def test_a_0230_send_in_berlin_makes_one_edition_a_day_across_a_dst_change(
        first_day: date) -> None:
    trigger = scheduling.cron("30 2 * * *", BERLIN, "send")
    start = datetime.combine(first_day, datetime.min.time(), BERLIN)
    made = reconciled(trigger, BERLIN, start, start + timedelta(days=5), timedelta(minutes=5))
    days = Counter(period[:10] for period in made)
    assert days == {(first_day + timedelta(days=n)).isoformat(): 1 for n in range(5)}


def test_the_slot_that_happens_twice_when_clocks_go_back_is_one_period() -> None:
    trigger = scheduling.cron("30 2 * * *", BERLIN, "send")
    firings, previous = [], None
    moment = datetime(2026, 10, 24, 12, tzinfo=BERLIN)
    for _ in range(3):
        previous = trigger.get_next_fire_time(previous, moment)
        firings.append(previous)
        moment = previous
    # APScheduler fires at 02:30 CEST and again at 02:30 CET on 25 October...
    assert [(f.astimezone(UTC).day, f.astimezone(UTC).hour) for f in firings] == [
        (25, 0), (25, 1), (26, 1)]
    # ...and both firings are the same edition.
    periods = [scheduling.period(f, BERLIN) for f in firings]
    assert periods[0] == periods[1] == "2026-10-25T02:30:00" != periods[2]


def test_the_slot_that_does_not_exist_when_clocks_go_forward_still_has_its_day() -> None:
    trigger = scheduling.cron("30 2 * * *", BERLIN, "send")
    after = datetime(2026, 3, 29, 6, tzinfo=BERLIN)
    assert scheduling.due_period(trigger, BERLIN, after, GRACE) is not None
    assert scheduling.due_period(trigger, BERLIN, after, GRACE).startswith("2026-03-29")


def test_three_days_down_makes_only_the_latest_edition() -> None:
    trigger = scheduling.cron("0 7 * * *", BERLIN, "send")
    made = {"2026-11-20T07:00:00"}
    back = datetime(2026, 11, 23, 9, 30, tzinfo=BERLIN)  # down since the 20th, 07:05
    assert reconciled(trigger, BERLIN, back, back + timedelta(hours=6), timedelta(minutes=5),
                      made) == ["2026-11-23T07:00:00"]


def test_a_slot_missed_by_more_than_the_grace_period_is_let_pass() -> None:
    trigger = scheduling.cron("0 7 * * *", BERLIN, "send")
    assert scheduling.due_period(trigger, BERLIN, datetime(2026, 11, 23, 12, 59, tzinfo=BERLIN),
                                 GRACE) == "2026-11-23T07:00:00"
    assert scheduling.due_period(trigger, BERLIN, datetime(2026, 11, 23, 13, 1, tzinfo=BERLIN),
                                 GRACE) is None
    # Before the day's slot, the one due is nothing (yesterday's is long past the grace).
    assert scheduling.due_period(trigger, BERLIN, datetime(2026, 11, 23, 6, 59, tzinfo=BERLIN),
                                 GRACE) is None


def test_a_seconds_level_schedule_finds_its_slot_at_once() -> None:
    trigger = scheduling.cron("*/5 * * * * *", BERLIN, "send")
    moment = datetime(2026, 11, 23, 9, 30, 7, 500, tzinfo=BERLIN)
    assert scheduling.due_period(trigger, BERLIN, moment, GRACE) == "2026-11-23T09:30:05"


def test_next_runs_come_from_the_config_in_the_newsletter_zone() -> None:
    config = Config(newsletter=Newsletter(timezone="Europe/Berlin"),
                    schedule=Schedule(collect="30m", send="0 7 * * 1-5"))
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    runs = {run.job: run.at for run in scheduling.next_runs(config, saturday)}
    assert runs["send"] == datetime(2026, 11, 30, 7, 0, tzinfo=BERLIN)
    assert runs["collect"] == saturday + timedelta(minutes=30)


@pytest.mark.parametrize(("weekdays", "first"), [
    ("1-5", date(2026, 11, 30)), ("0", date(2026, 11, 29)), ("7", date(2026, 11, 29)),
    ("6,0", date(2026, 11, 28)), ("sat", date(2026, 11, 28))])
def test_weekdays_count_from_sunday_as_in_crontab(weekdays: str, first: date) -> None:
    trigger = scheduling.cron(f"0 7 * * {weekdays}", BERLIN, "send")
    friday_noon = datetime(2026, 11, 27, 12, tzinfo=BERLIN)
    assert trigger.get_next_fire_time(None, friday_noon).date() == first


@pytest.mark.parametrize(("schedule", "says"), [
    (Schedule(send="0 7 * *"), "schedule.send '0 7 * *' is not a cron line"),
    (Schedule(send="0 25 * * *"), "schedule.send '0 25 * * *' is not a cron line"),
    (Schedule(collect="every now and then"), "schedule.collect"),
    (Schedule(grace="soon"), "schedule.grace must be a duration"),
])
def test_a_bad_schedule_names_its_key(schedule: Schedule, says: str) -> None:
    config = Config(schedule=schedule)
    with pytest.raises(DigestError, match=says.replace("*", r"\*")):
        scheduling.Runner(config, None)  # type: ignore[arg-type]
        scheduling.collect_trigger(config, datetime(2026, 11, 23, tzinfo=UTC))


def test_durations_read_as_operators_write_them() -> None:
    assert duration("90s") == timedelta(seconds=90)
    assert duration("30m") == timedelta(minutes=30)
    assert duration(" 6h ") == timedelta(hours=6)
    assert duration("1.5d") == timedelta(hours=36)
    assert duration("*/30 * * * *") is None


@settings(max_examples=30, deadline=None)
@given(zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                             "America/Santiago", "Asia/Kolkata", "UTC"]),
       hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 45]),
       first=st.dates(date(2026, 1, 1), date(2026, 12, 25)),
       every=st.integers(10, 180))
def test_a_daily_send_makes_one_edition_per_local_day_whatever_the_zone(
        zone: str, hour: int, minute: int, first: date, every: int) -> None:
    where = ZoneInfo(zone)
    trigger = scheduling.cron(f"{minute} {hour} * * *", where, "send")
    start = datetime.combine(first, datetime.min.time(), where)
    made = reconciled(trigger, where, start, start + timedelta(days=4), timedelta(minutes=every))
    days = Counter(period[:10] for period in made)
    assert set(days.values()) == {1}
    inner = [(first + timedelta(days=n)).isoformat() for n in range(1, 3)]
    assert all(day in days for day in inner), (made, inner)
