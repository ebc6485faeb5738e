"""The pipeline graph, declared once, and the job-state contract every dispatcher relies on.

    probe -> shots -> ocr ----\\
          \\        \\-> vision -> index
           \\-> asr -----------/

A stage is enqueued when all it needs are done (or skipped). The job store decides that inside one
transaction per completion, so a fan-in stage is enqueued by exactly one caller, once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from heimdex.domain import AssetRef


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    entry: str  # "module:function", imported only where the stage runs

    def function(self) -> Callable[..., dict[str, Any]]:
        module, func = self.entry.split(":")
        fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), func)
        return fn


PIPELINE: tuple[Stage, ...] = (
    Stage("probe", (), "heimdex.stages.probe:run"),
    Stage("asr", ("probe",), "heimdex.stages.asr:run"),
    Stage("shots", ("probe",), "heimdex.stages.shots:run"),
    Stage("ocr", ("shots",), "heimdex.stages.ocr:run"),
    Stage("vision", ("shots",), "heimdex.stages.vision:run"),
    Stage("index", ("asr", "ocr", "vision"), "heimdex.stages.index:run"),
)
STAGES = {s.name: s for s in PIPELINE}
FIRST = PIPELINE[0].name
LAST = PIPELINE[-1].name
FINISHED = ("done", "skipped")


def ready_stages(stage_states: dict[str, dict[str, Any]]) -> list[str]:
    """Stages not yet started whose needs are all finished, in declaration order."""
    return [
        s.name
        for s in PIPELINE
        if s.name not in stage_states
        and all(stage_states.get(n, {}).get("status") in FINISHED for n in s.needs)
    ]


@dataclass(frozen=True)
class Delivery:
    """What to do with one delivery of a (job, stage) task, judged from the job's state."""

    verdict: Literal["run", "duplicate", "early", "ignored"]
    reason: str = ""
    next: tuple[str, ...] = ()  # for a duplicate: stages it unlocked that have not started yet


def check_delivery(job: dict[str, Any] | None, stage: str) -> Delivery:
    """Tasks arrive at least once and in any order. Run a stage only if its job exists (in the task's
    organisation), is running, the stage has not finished and all it needs have; otherwise:
    - no job: `ignored` (nothing to do);
    - job ready/failed, or the stage finished: `duplicate`, with the stages it unlocked that never
      started, to enqueue again (a crash between recording the stage and enqueueing them; task names
      make that enqueue idempotent);
    - needs not finished: `early` (retry later; the attempt is not counted)."""
    if job is None:
        return Delivery("ignored", "no such job in this organisation")
    if job.get("status") != "running":
        return Delivery("duplicate", f"job is {job.get('status')}")
    stages: dict[str, dict[str, Any]] = job.get("stages") or {}
    if stages.get(stage, {}).get("status") in FINISHED:
        queued = tuple(
            s.name for s in PIPELINE if stage in s.needs and stages.get(s.name, {}).get("status") == "queued"
        )
        return Delivery("duplicate", f"{stage} finished already", queued)
    waiting = [n for n in STAGES[stage].needs if stages.get(n, {}).get("status") not in FINISHED]
    if waiting:
        return Delivery("early", f"{stage} waits for {', '.join(waiting)}")
    return Delivery("run")


def record_completion(
    stages: dict[str, dict[str, Any]], stage: str, *, status: str, seconds: float, note: str | None, at: Any
) -> list[str] | None:
    """Record a finished stage in a job's stage map (in place) and mark the stages it unlocks as
    queued. Returns those stages, which the caller must enqueue, or None if the stage was already
    finished (a duplicate delivery). Job stores call this inside their transaction."""
    state = stages.setdefault(stage, {})
    if state.get("status") in FINISHED:
        return None
    state.update(status=status, seconds=round(seconds, 3), finished=at)
    if note:
        state["note"] = note
    nxt = ready_stages(stages)
    for name in nxt:
        stages[name] = {"status": "queued"}
    return nxt


class JobStore(Protocol):
    """Job state: Postgres in the embedded default, Firestore in the cloud."""

    def create(self, ref: AssetRef, *, restart: bool = False) -> bool:
        """Start a job unless one exists for the asset (in any state) or restart; True if this call did."""
        ...

    def stage_started(self, ref: AssetRef, stage: str) -> int:
        """Record an attempt; returns the attempt number (1-based)."""
        ...

    def stage_finished(
        self, ref: AssetRef, stage: str, *, status: str, seconds: float, note: str | None = None
    ) -> list[str]:
        """Mark a stage done/skipped; returns the stages this call must enqueue (each exactly once)."""
        ...

    def job_failed(self, ref: AssetRef, stage: str, error: str) -> None: ...

    def get(self, ref: AssetRef) -> dict[str, Any] | None: ...

    def get_by_id(self, job_id: str, *, org_id: str) -> dict[str, Any] | None:
        """The job if it belongs to `org_id`; another organisation's job reads as absent."""
        ...
