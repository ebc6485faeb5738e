"""Stuck jobs: the rule that ends a job nothing will finish.

A queue that gives up on a task (retries exhausted, a task lost with its process) leaves the job
`running` with that task `queued` or `running` forever. A task is stalled when it has shown no
progress for longer than its stage's deadline times its attempts (at least one): a running task
since its last attempt started, a queued one since its job last changed. Each job store's
`sweep(now, deadlines)` fails such jobs (`stalled in <task>: ...`), judging each again inside the
transaction that fails it, so a completion that lands meanwhile wins. It runs on a schedule in the
cloud (`POST /sweep`, Cloud Scheduler) and at the start of `heimdex index` and `heimdex serve`
(`Engine.sweep`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from heimdex.core.graph import PIPELINE, parse_task_key

ORDER = {stage.name: i for i, stage in enumerate(PIPELINE)}


@dataclass(frozen=True)
class Stall:
    """A job found stalled, and the task it stalled in."""

    job_id: str
    org_id: str
    source: str
    key: str  # the task: `asr`, or `asr_3` for a segment
    idle_s: float
    attempts: int

    @property
    def reason(self) -> str:
        return f"stalled in {self.key}: no progress for {self.idle_s:.0f} s after {self.attempts} attempt(s)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "org_id": self.org_id,
            "source": self.source,
            "task": self.key,
            "reason": self.reason,
        }


def as_utc(value: Any) -> datetime | None:
    """A stored time (a datetime from PostgreSQL or Firestore, ISO text inside the PostgreSQL stage
    map) as an aware UTC datetime; None when there is none."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def find_stall(job: Mapping[str, Any] | None, now: datetime, deadlines: Mapping[str, float]) -> Stall | None:
    """The stalled task of a running job at `now`, or None. `deadlines`: stage -> seconds one attempt
    may take (a stage without a positive deadline is never stalled). With several stalled tasks, the
    first in pipeline order (then segment order) is named."""
    if not job or job.get("status") != "running":
        return None
    updated = as_utc(job.get("updated_at"))
    found: list[tuple[int, int, Stall]] = []
    for key, state in (job.get("stages") or {}).items():
        status = state.get("status")
        if status not in ("queued", "running"):
            continue
        try:
            stage, part = parse_task_key(key)
        except KeyError:
            continue
        deadline = float(deadlines.get(stage) or 0)
        if deadline <= 0:
            continue
        attempts = int(state.get("attempts") or 0)
        since = (as_utc(state.get("started")) if status == "running" else None) or updated
        if since is None:
            continue
        idle = (now - since).total_seconds()
        if idle > deadline * max(attempts, 1):
            stall = Stall(
                job_id=str(job.get("job_id", "")),
                org_id=str(job.get("org_id", "")),
                source=str(job.get("source", "")),
                key=key,
                idle_s=idle,
                attempts=attempts,
            )
            found.append((ORDER[stage], part or 0, stall))
    return min(found, key=lambda f: f[:2])[2] if found else None
