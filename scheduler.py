"""Run digest's jobs on their schedules: `python scheduler.py [--config FILE] [--once]`.

The code lives in the package (`digest.scheduler`), so an installed wheel runs it as
`python -m digest.scheduler`; this file keeps the checkout's short form.
"""

import sys

from digest.scheduler import main

if __name__ == "__main__":
    sys.exit(main())
