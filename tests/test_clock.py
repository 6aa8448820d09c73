"""The scheduler's clock: a linear map of real time, its triggers read through it, and the
option that sets it."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from support import Site

from digest import clock, scheduling
from digest.clock import SYSTEM, Lapse
from digest.errors import DigestError

SCHEDULER = Path(__file__).resolve().parents[1] / "scheduler.py"
SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)
REAL = datetime(2026, 12, 1, 10, 30, 0, 123456, tzinfo=UTC)
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))


@given(MOMENTS)
def test_the_system_clock_is_the_identity(moment: datetime) -> None:
    assert abs(SYSTEM.simulated(moment) - moment) <= timedelta(microseconds=1)
    assert abs(SYSTEM.real(moment) - moment) <= timedelta(microseconds=1)


@given(st.floats(min_value=1, max_value=100_000),
       st.timedeltas(min_value=timedelta(days=-1), max_value=timedelta(days=1)))
def test_a_lapse_runs_speed_times_as_fast_from_its_origin(speed: float,
                                                         away: timedelta) -> None:
    lapse = Lapse(SUNDAY, REAL.timestamp(), speed)
    real = REAL + away
    assert lapse.simulated(REAL) == SUNDAY
    later = lapse.simulated(REAL + timedelta(seconds=10))
    assert abs(later - (SUNDAY + timedelta(seconds=10 * speed))) < timedelta(milliseconds=1)
    assert abs(lapse.real(lapse.simulated(real)) - real) < timedelta(milliseconds=1)


def test_a_lapsed_cron_fires_each_slot_once_when_given_back_its_own_times() -> None:
    """As APScheduler asks: the next time after now, then after each time it was given, the
    last of a run's times given back after a later one. Mapped back through floats, a time
    could land before its slot and fire it again and again."""
    lapse = Lapse(SUNDAY, REAL.timestamp(), 3600 * 7.3)
    hourly = scheduling.Lapsed(scheduling.cron("0 * * * *", ZoneInfo("UTC"), "send"), lapse)
    now = REAL
    fired: list[datetime] = []
    upcoming = hourly.get_next_fire_time(None, now)
    for _ in range(200):
        now += timedelta(seconds=0.37)
        due: list[datetime] = []
        while upcoming is not None and upcoming <= now:
            due.append(upcoming)
            upcoming = hourly.get_next_fire_time(upcoming, now)
            assert len(due) < 10, "a slot fires again and again"
        if due:
            fired.extend(due)
            upcoming = hourly.get_next_fire_time(due[-1], now)
    slots = [lapse.simulated(moment) for moment in fired]
    assert len(slots) == len(set(round(s.timestamp()) for s in slots)) > 100
    # On the hour, give or take the floats of the mapping, and every hour once.
    assert all(s.minute == 0 and s.second == 0 for s in
               (slot + timedelta(milliseconds=50) for slot in slots))
    assert all(later - earlier >= timedelta(minutes=59) for earlier, later in
               itertools.pairwise(slots))


def test_a_time_lapse_that_is_not_one_is_a_usage_error_naming_it(site: Site) -> None:
    for wrong in ("2026-11-29T00:00:00+00:00,1796000000", "2026-11-29T00:00:00,0,60",
                  "2026-11-29T00:00:00+00:00,0,0", "yesterday,0,1"):
        try:
            clock.lapse(wrong)
        except DigestError as error:
            assert error.status == 2 and wrong in str(error)
        else:
            raise AssertionError(f"{wrong!r} was taken")
    site.feeds = [("News", "https://example.com/feed.xml")]
    site.write()
    done = subprocess.run([sys.executable, str(SCHEDULER), "--config", str(site.config),
                           "--time-lapse", "soon,0,1"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "--time-lapse 'soon,0,1' is not ORIGIN,REAL_ORIGIN,SPEED" in done.stderr
    assert "Traceback" not in done.stderr
