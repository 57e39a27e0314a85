"""Structured JSON logs: one object per line, to stdout and to LOG_FILE if set.

Request lines carry at least ``ts, level, msg, method, path, route, status, duration_ms,
correlation_id, instance_id, remote_addr`` (cross-team contract).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUEST_LOGGER = "stock_api.request"
_OWN_HANDLER = "_stock_api_handler"
# Only ids a gateway would plausibly send; anything else is replaced, not logged.
_ID_RE = re.compile(r"^[A-Za-z0-9._#@:+-]{1,128}$")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self._instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
            "instance_id": self._instance_id,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(instance_id: str, log_file: Path | None) -> logging.Logger:
    """(Re)attach the JSON handlers to the ``stock_api`` logger; safe to call again."""
    root = logging.getLogger("stock_api")
    for handler in list(root.handlers):
        if getattr(handler, _OWN_HANDLER, False):
            root.removeHandler(handler)
            handler.close()
    formatter = JsonFormatter(instance_id)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Watched: a logrotate move is noticed and the file reopened.
        handlers.append(logging.handlers.WatchedFileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OWN_HANDLER, True)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return logging.getLogger(REQUEST_LOGGER)


def correlation_id(*candidates: str | None) -> str:
    """The first plausible caller-supplied id among ``candidates``, or a new one."""
    for candidate in candidates:
        if candidate and _ID_RE.match(candidate):
            return candidate
    return uuid.uuid4().hex
