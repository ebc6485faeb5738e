"""The job-state interface every dispatcher relies on; the implementations are
`heimdex.adapters.pg_jobs` (embedded) and `heimdex.adapters.firestore_jobs` (cloud). Both record
completions with `heimdex.core.graph.record_completion` inside one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from heimdex.domain import AssetRef

if TYPE_CHECKING:
    from heimdex.core.sweep import Stall


class JobStore(Protocol):
    """Job state: Postgres in the embedded default, Firestore in the cloud."""

    def create(self, ref: AssetRef, *, restart: bool = False) -> bool:
        """Start a job unless one exists for the asset (in any state) or restart; True if this call did."""
        ...

    def stage_started(self, ref: AssetRef, stage: str) -> int:
        """Record an attempt; returns the attempt number (1-based)."""
        ...

    def stage_finished(
        self,
        ref: AssetRef,
        stage: str,
        *,
        status: str,
        seconds: float,
        note: str | None = None,
        parts: int | None = None,
    ) -> list[str]:
        """Mark a task done/skipped; returns the tasks this call must enqueue (each exactly once)."""
        ...

    def job_failed(self, ref: AssetRef, stage: str, error: str) -> None: ...

    def get(self, ref: AssetRef) -> dict[str, Any] | None: ...

    def get_by_id(self, job_id: str, *, org_id: str) -> dict[str, Any] | None:
        """The job if it belongs to `org_id`; another organisation's job reads as absent."""
        ...

    def sweep(self, now: datetime, deadlines: Mapping[str, float]) -> list[Stall]:
        """Fail every running job (all organisations) stalled at `now` by `heimdex.core.sweep.find_stall`,
        each judged again inside the transaction that fails it; returns those it failed."""
        ...
