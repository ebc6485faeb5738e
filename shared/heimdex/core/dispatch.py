"""The task-dispatch interface: how a finished stage (or an ingest) hands the next task on.
Implementations: `heimdex.adapters.cloud_tasks` (one Cloud Tasks queue per stage) and the embedded
thread pool, `heimdex.embedded.dispatch`."""

from __future__ import annotations

from typing import Protocol

from heimdex.domain import AssetRef


class Dispatcher(Protocol):
    def enqueue(self, ref: AssetRef, stage: str) -> None: ...
