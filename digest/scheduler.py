"""Run digest's jobs on their schedules: `python -m digest.scheduler [--config FILE] [--once]`
(the top-level `scheduler.py` of a checkout runs this too).

Exit status: 0 stopped cleanly (SIGTERM/SIGINT) or, with --once, all delivered; 1 another
process holds the state folder, or --once left something for a look; 2 a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from digest import config, logs, scheduling
from digest.errors import DigestError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="digest.toml (default: $DIGEST_CONFIG, ./digest.toml)")
    parser.add_argument("--once", action="store_true", help="collect and send once, then exit")
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
        return scheduling.forever(settings)
    except DigestError as error:
        logging.getLogger("digest.scheduler").error("%s", error)
        return error.status


if __name__ == "__main__":
    sys.exit(main())
