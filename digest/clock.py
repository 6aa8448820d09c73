"""What time it is, for the scheduler and the jobs it runs.

A clock is a linear map of real time: `simulated = origin + (real - real_origin) * speed`.
The system clock is the identity (origin the UNIX epoch, real origin 0, speed 1), so
production and a rehearsal run the same code. A time lapse (`python scheduler.py
--time-lapse`) runs a schedule faster against the outbox or a sink: a fortnight of slots in a
few minutes. Its real origin is a fixed UNIX time, not the start of the process, so a process
restarted with the same lapse continues the same simulated timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from digest.errors import DigestError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Lapse:
    """Time as `origin + (real - real_origin) * speed`, real time read from time.time()."""

    origin: datetime = _EPOCH  # the simulated moment at `real_origin`
    real_origin: float = 0.0  # a UNIX time
    speed: float = 1.0  # simulated seconds per real second

    def now(self) -> datetime:
        return self.simulated(datetime.fromtimestamp(time.time(), UTC))

    def simulated(self, real: datetime) -> datetime:
        """The simulated moment at a real one."""
        return self.origin + timedelta(
            seconds=(real.timestamp() - self.real_origin) * self.speed)

    def real(self, simulated: datetime) -> datetime:
        """The real moment at which the clock shows `simulated`."""
        seconds = (simulated - self.origin).total_seconds() / self.speed + self.real_origin
        return datetime.fromtimestamp(seconds, UTC)

    def span(self, simulated: timedelta) -> timedelta:
        """How long a simulated span lasts in real time."""
        return simulated / self.speed


SYSTEM = Lapse()


def lapse(text: str) -> Lapse:
    """`--time-lapse ORIGIN,REAL_ORIGIN,SPEED`: the simulated moment (ISO 8601 with its
    offset) the clock shows at the UNIX time REAL_ORIGIN, and simulated seconds per real
    second, e.g. "2026-11-29T00:00:00+00:00,1796000000,3600" (an hour a second)."""
    parts = text.split(",")
    try:
        if len(parts) != 3:
            raise ValueError("three fields, separated by commas")
        origin, real_origin, speed = (datetime.fromisoformat(parts[0].strip()),
                                      float(parts[1]), float(parts[2]))
        if origin.tzinfo is None:
            raise ValueError("the origin needs its UTC offset")
        if not speed > 0:
            raise ValueError("the speed must be above 0")
    except ValueError as error:
        raise DigestError(f"--time-lapse {text!r} is not ORIGIN,REAL_ORIGIN,SPEED: {error}",
                          2) from None
    return Lapse(origin.astimezone(UTC), real_origin, speed)


def wall_moment(zone: ZoneInfo, wall: datetime) -> datetime:
    """The moment (UTC) at which the clocks of `zone` show the naive time `wall`.

    A time that happens twice (the clocks go back) is its first occurrence. A time that
    never happens (the clocks spring forward over it) is as far past the jump as it was into
    the gap: 02:30 on the day New York goes from 02:00 to 03:00 is 03:30 EDT, and on Lord
    Howe (02:00 to 02:30) 02:15 is 02:45. That is PEP 495's reading with fold=0: the offset
    from before the change."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
