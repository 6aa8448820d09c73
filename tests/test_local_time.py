"""Local morning: with `newsletter.local_time`, one edition per slot serves every zone, and
each subscriber's delivery is due at their own 07:00, across DST changes too.

The due-time arithmetic is a pure function, tested as properties over zones with odd
offsets and DST gaps and overlaps; the deliveries go through the scheduler's own reconcile
step, real SMTP and SQLite, on a clock the test moves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from servers import FeedServer, SmtpServer
from support import Item, Site, rows, rss

from digest import config as configuration
from digest import scheduling
from digest.clock import wall_moment

pytestmark = pytest.mark.backends

ZONES = ("UTC", "Europe/London", "America/New_York", "Asia/Tokyo", "Asia/Kathmandu",
         "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham", "Asia/Kolkata")
WALLS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31))


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def happens(zone: ZoneInfo, wall: datetime) -> bool:
    """Whether the zone's clocks ever show `wall` (not in a spring-forward gap)."""
    return local(wall.replace(tzinfo=zone), zone) == wall


@given(st.sampled_from(ZONES), WALLS)
@example("America/New_York", datetime(2026, 3, 8, 2, 30))   # in the gap
@example("America/New_York", datetime(2026, 11, 1, 1, 30))  # happens twice
@example("Australia/Lord_Howe", datetime(2026, 10, 4, 2, 15))  # a half-hour gap
@example("Australia/Lord_Howe", datetime(2026, 4, 5, 1, 45))  # a half-hour overlap
def test_a_slot_is_due_when_the_zones_clocks_first_show_it_or_just_after_a_gap(
        name: str, wall: datetime) -> None:
    zone = ZoneInfo(name)
    due = wall_moment(zone, wall)
    shown = local(due, zone)
    if happens(zone, wall):
        assert shown == wall
        # The first time it shows: no earlier moment within the longest overlap (1 h) does.
        for back in (timedelta(minutes=30), timedelta(hours=1)):
            assert local(due - back, zone) != wall
    else:
        # Sprung over: as far past the jump as the slot was into the gap, never early, and
        # by the jump's size (an hour, or Lord Howe's half hour).
        assert timedelta(0) < shown - wall <= timedelta(hours=1)
        jump = shown - wall
        assert local(due - jump, zone) < wall <= shown
        # A change of the clocks is at hand.
        before, after = (due - timedelta(hours=2)).astimezone(zone), due.astimezone(zone)
        assert before.utcoffset() != after.utcoffset()


@given(st.sampled_from(ZONES), WALLS, st.timedeltas(min_value=timedelta(0),
                                                    max_value=timedelta(days=2)))
def test_later_slots_are_never_due_earlier(name: str, wall: datetime, later: timedelta) -> None:
    zone = ZoneInfo(name)
    assert wall_moment(zone, wall) <= wall_moment(zone, wall + later)


def test_the_odd_offsets_and_both_dst_changes_by_example() -> None:
    def at(name: str, wall: datetime) -> datetime:
        return wall_moment(ZoneInfo(name), wall)
    assert at("Asia/Kathmandu", datetime(2026, 12, 1, 7)) == datetime(2026, 12, 1, 1, 15,
                                                                      tzinfo=UTC)
    # 02:30 on the spring-forward day is 03:30 EDT, an hour after the gap began.
    assert at("America/New_York", datetime(2026, 3, 8, 2, 30)) == datetime(2026, 3, 8, 7, 30,
                                                                        tzinfo=UTC)
    # 01:30 on the fall-back day is the first 01:30 (EDT).
    assert at("America/New_York", datetime(2026, 11, 1, 1, 30)) == datetime(2026, 11, 1, 5, 30,
                                                                         tzinfo=UTC)
    # Lord Howe springs from 02:00 to 02:30 (+10:30 to +11): 02:15 is 02:45, +11.
    assert at("Australia/Lord_Howe", datetime(2026, 10, 4, 2, 15)) == datetime(
        2026, 10, 3, 15, 45, tzinfo=UTC)


class Hands:
    """A clock the test sets."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


SUBSCRIBERS = ("email,name,timezone\ntokyo@example.com,T,Asia/Tokyo\n"
               "london@example.com,L,\nnyc@example.com,N,America/New_York\n"
               "kathmandu@example.com,K,Asia/Kathmandu\n")


def newsletter(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.config.write_text(site.config.read_text().replace(
        "[newsletter]\n", '[newsletter]\ntimezone = "Europe/London"\nlocal_time = true\n', 1)
        + "[collect]\nfirst_run = 0\n")
    site.subscribers(SUBSCRIBERS)


def day(site: Site, web: FeedServer, smtp: SmtpServer, hands: Hands, runner: scheduling.Runner,
        slot: datetime, story: int) -> dict[str, datetime]:
    """One slot's day, reconciling every 15 minutes from 12 hours before the slot in UTC
    until 8 hours after: the moment each subscriber's copy arrived."""
    web.serve("/feed.xml", rss(Item(f"Story {story}", f"https://example.com/{story}",
                                    f"s{story}")))
    arrived: dict[str, datetime] = {}
    # At 19:00 UTC no zone in use is within the grace period (6 h) after its last slot.
    hands.at = max(hands.at, slot.replace(tzinfo=UTC) - timedelta(hours=12))
    runner.collect()
    while hands.at < slot.replace(tzinfo=UTC) + timedelta(hours=8):
        runner.reconcile()
        for received in smtp.messages:
            arrived.setdefault(received.rcpt_tos[0], hands.at)
        hands.at += timedelta(minutes=15)
    smtp.clear_messages()
    return arrived


def test_each_zone_gets_its_copy_at_its_own_seven_across_a_dst_change(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    newsletter(site, web, smtp)
    config = configuration.load(site.config)
    hands = Hands(datetime(2026, 3, 6, tzinfo=UTC))
    runner = scheduling.Runner(config, threading.Event(), hands)
    # New York changes its clocks on 8 March 2026, London on the 29th.
    for number, slot in enumerate((datetime(2026, 3, 7, 7), datetime(2026, 3, 8, 7),
                                   datetime(2026, 3, 29, 7)), 1):
        arrived = day(site, web, smtp, hands, runner, slot, number)
        for email, zone in (("tokyo@example.com", "Asia/Tokyo"),
                            ("london@example.com", "Europe/London"),
                            ("nyc@example.com", "America/New_York"),
                            ("kathmandu@example.com", "Asia/Kathmandu")):
            due = wall_moment(ZoneInfo(zone), slot)
            # At the first reconcile at or after their own 07:00, not before.
            assert due <= arrived[email] < due + timedelta(minutes=15), (slot, email)
    # One edition per slot, composed once, at the first zone's 07:00 (Tokyo's).
    made = rows(site.database, "SELECT period, created_at FROM editions ORDER BY id")
    assert [period for period, _ in made] == ["2026-03-07T07:00:00", "2026-03-08T07:00:00",
                                              "2026-03-29T07:00:00"]
    assert made[1][1] == "2026-03-07T22:00:00+00:00"
    due = dict(rows(site.database, "SELECT email, due_at FROM deliveries WHERE edition_id = 2"))
    assert due == {"tokyo@example.com": "2026-03-07T22:00:00+00:00",
                   "kathmandu@example.com": "2026-03-08T01:15:00+00:00",
                   "london@example.com": "2026-03-08T07:00:00+00:00",
                   "nyc@example.com": "2026-03-08T11:00:00+00:00"}
    assert rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1") == [
        ("sent", 12)]


def test_a_restart_mid_day_repeats_nobody_and_drops_nobody(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    newsletter(site, web, smtp)
    config = configuration.load(site.config)
    web.serve("/feed.xml", rss(Item("Story", "https://example.com/s", "s")))
    hands = Hands(datetime(2026, 3, 7, 22, 5, tzinfo=UTC))  # Tokyo's 07:05
    first = scheduling.Runner(config, threading.Event(), hands)
    first.collect()
    first.reconcile()
    assert smtp.recipients() == {"tokyo@example.com": 1}
    # Another process (a restart) at London's 07:30: London and Kathmandu, nobody again.
    hands.at = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    scheduling.Runner(config, threading.Event(), hands).start()
    assert smtp.recipients() == {"tokyo@example.com": 1, "london@example.com": 1,
                                 "kathmandu@example.com": 1}
    hands.at = datetime(2026, 3, 8, 12, tzinfo=UTC)
    scheduling.Runner(config, threading.Event(), hands).start()
    assert smtp.recipients() == {"tokyo@example.com": 1, "london@example.com": 1,
                                 "kathmandu@example.com": 1, "nyc@example.com": 1}
    assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]
