"""Run digest's jobs on their schedules: `python -m digest.scheduler [--config FILE] [--once]`
(the top-level `scheduler.py` of a checkout runs this too).

`--time-lapse ORIGIN,REAL_ORIGIN,SPEED` rehearses the schedule on a clock that runs SPEED
times as fast and shows ORIGIN at the UNIX time REAL_ORIGIN, e.g.
`--time-lapse 2026-11-30T00:00:00+00:00,$(date +%s),3600` (an hour a second). Point the
delivery at the outbox (transport "maildir") or a sink, and the state at a folder of its own:
the rehearsal mails and records as the real thing would. A process restarted with the same
lapse continues the same simulated timeline.

Exit status: 0 stopped cleanly (SIGTERM/SIGINT) or, with --once, all delivered; 1 another
process holds the state folder, or --once left something for a look; 2 a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from digest import clock, config, logs, scheduling
from digest.errors import DigestError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="digest.toml (default: $DIGEST_CONFIG, ./digest.toml)")
    parser.add_argument("--once", action="store_true", help="collect and send once, then exit")
    parser.add_argument("--time-lapse", metavar="ORIGIN,REAL_ORIGIN,SPEED",
                        help="rehearse the schedule on a faster clock (see above)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one object per line, for log shippers")
    options = parser.parse_args()
    logs.setup(options.log_level, options.log_format)
    try:
        settings = config.load(options.config)
        if options.once:
            return scheduling.once(settings)
        lapse = clock.lapse(options.time_lapse) if options.time_lapse else clock.SYSTEM
        return scheduling.forever(settings, lapse)
    except DigestError as error:
        logging.getLogger("digest.scheduler").error("%s", error)
        return error.status


if __name__ == "__main__":
    sys.exit(main())
