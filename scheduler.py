"""Run digest's jobs on their schedules: `python scheduler.py [--config FILE] [--once]`."""

from __future__ import annotations

import argparse
import logging
import sys

from digest import config, scheduling
from digest.errors import DigestError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="digest.toml (default: $DIGEST_CONFIG, ./digest.toml)")
    parser.add_argument("--once", action="store_true", help="collect and send once, then exit")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    options = parser.parse_args()
    logging.basicConfig(level=options.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = config.load(options.config)
        if options.once:
            scheduling.once(settings)
        else:
            scheduling.forever(settings)
    except DigestError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
