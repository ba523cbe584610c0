"""Structured logs: one ``key=value`` line per event (logfmt), for people and for log collectors.

Every line starts with ``ts`` (UTC, milliseconds), ``level``, ``logger`` and
``msg``; events with data (a request, an association) add their own fields,
passed as ``extra={"fields": {...}}``. The level comes from the ``LogLevel``
option or the ``--log-level`` flag.

Request lines are at DEBUG level: writing a line costs about 20 µs here, as
much as a third of a fast request, so they are on only when asked for.
Requests slower than :data:`SLOW_REQUEST_SECONDS` are logged at INFO and
server errors at WARNING, so that those show up at the default level.
"""

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

SLOW_REQUEST_SECONDS = 1.0

access_logger = logging.getLogger("fastpacs.access")


def parse_level(name: str) -> int:
    """The logging level named ``name`` (case-insensitive); ``ValueError`` naming the choices otherwise."""
    level = LEVELS.get(name.strip().lower())
    if level is None:
        raise ValueError(f"LogLevel must be one of {', '.join(LEVELS)}, not {name!r}")
    return level


def _quoted(value: object) -> str:
    text = str(value)
    if text and not any(character in text for character in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={moment}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quoted(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{key}={_quoted(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"error={_quoted(self.formatException(record.exc_info))}")
        return " ".join(parts)


class _FastpacsHandler(logging.StreamHandler):
    """The handler :func:`configure_logging` installs (and replaces when called again)."""


def configure_logging(level: str) -> None:
    """Send the ``fastpacs`` loggers to stderr as logfmt lines, at ``level`` and above."""
    logger = logging.getLogger("fastpacs")
    for handler in [handler for handler in logger.handlers if isinstance(handler, _FastpacsHandler)]:
        logger.removeHandler(handler)
    handler = _FastpacsHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    logger.addHandler(handler)
    logger.setLevel(parse_level(level))
    logger.propagate = False


def log_request(scope: Mapping[str, Any], route: str, status: int, seconds: float) -> None:
    """The line of one answered HTTP request, from its ASGI scope (see the module's note on levels)."""
    if status >= 500:
        level = logging.WARNING
    elif seconds >= SLOW_REQUEST_SECONDS:
        level = logging.INFO
    else:
        level = logging.DEBUG
    if not access_logger.isEnabledFor(level):
        return
    client = scope.get("client")
    access_logger.log(
        level,
        "request",
        extra={
            "fields": {
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else "",
            }
        },
    )
