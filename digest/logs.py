"""Log lines for operators: one line per event, with the time, the level, the job and the facts.

Text for people reading `journalctl`, JSON (one object per line) for log shippers. The job is
taken from a context variable that each scheduled job sets in its own thread, so modules
below (jobs, deliver) need not know they are running under the scheduler.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

JOB: contextvars.ContextVar[str] = contextvars.ContextVar("job", default="-")


def event(logger: logging.Logger, level: int, what: str, **facts: Any) -> None:
    """Log `what` with its facts: `key=value` pairs in text, fields of their own in JSON."""
    logger.log(level, what, extra={"facts": facts})


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _one_line(record: logging.LogRecord) -> str | None:
    if not record.exc_info:
        return None
    text = "".join(traceback.format_exception(*record.exc_info)).strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _quoted(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' ="\n') else text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        facts = dict(getattr(record, "facts", {}))
        error = _one_line(record)
        if error:
            facts["error"] = error
        tail = "".join(f" {key}={_quoted(value)}" for key, value in facts.items())
        message = " ".join(record.getMessage().splitlines())
        return f"{_time(record)} {record.levelname} {JOB.get()} {message}{tail}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _time(record), "level": record.levelname, "job": JOB.get(),
                "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "facts", {}))
        error = _one_line(record)
        if error:
            line["error"] = error
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # APScheduler announces every run at INFO and logs job errors itself; our listener reports
    # both, once, in our format.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "DEBUG"
                                              else logging.ERROR)
    logging.getLogger("apscheduler.executors").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
