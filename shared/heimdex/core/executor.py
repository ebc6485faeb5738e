"""Run one stage of one job and record the outcome: the same code behind every dispatcher.

Whoever delivers a (job, stage) task, the in-process pool or a Cloud Tasks HTTP call, calls
`run_stage` and then enqueues exactly the stages it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from heimdex.core.context import StageContext
from heimdex.core.graph import FIRST, STAGES, check_delivery, parse_task_key
from heimdex.core.jobs import JobStore
from heimdex.domain import MediaError, StageSkipped
from heimdex.models import ModelUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "skipped", "retry", "failed", "duplicate", "ignored"]
    next: list[str] = field(default_factory=list)
    error: str | None = None


StageCall = Callable[[StageContext, str], dict[str, Any]]


def call_here(ctx: StageContext, stage: str) -> dict[str, Any]:
    return STAGES[stage].function()(ctx)


def run_stage(
    ctx: StageContext, jobs: JobStore, key: str, *, max_attempts: int, call: StageCall = call_here
) -> Outcome:
    """Run one task (`asr`, or `asr_3` for a segment) with `call` (in this process by default)."""
    stage, part = parse_task_key(key)
    ctx = replace(ctx, part=part)
    ref = ctx.ref
    delivery = check_delivery(jobs.get(ref), key)  # at-least-once, any order: see check_delivery
    if delivery.verdict != "run":
        log.info("delivery not run", extra={"job": ref.job_id, "stage": key, "reason": delivery.reason})
        if delivery.verdict == "early":
            return Outcome("retry", error=delivery.reason)
        return Outcome(delivery.verdict, list(delivery.next), delivery.reason)
    attempt = jobs.stage_started(ref, key)
    started = time.perf_counter()
    note = None
    parts = None
    try:
        if attempt <= ctx.settings.fail_first_attempts.get(stage, 0):
            raise RuntimeError(f"injected fault in {key}, attempt {attempt}")
        doc = call(ctx, stage)
        if stage == FIRST:
            parts = len(doc.get("segments") or [None])
        status: Literal["done", "skipped"] = "done"
    except (StageSkipped, ModelUnavailable) as exc:
        if not STAGES[stage].optional:  # e.g. the text model: no asset without it, and no retry helps
            jobs.job_failed(ref, key, str(exc))
            log.warning("stage failed", extra={"job": ref.job_id, "stage": key, "error": str(exc)})
            return Outcome("failed", error=str(exc))
        note = str(exc)
        ctx.write_output(stage, {"skipped": note})
        status = "skipped"
    except MediaError as exc:
        jobs.job_failed(ref, key, str(exc))
        log.info("stage failed", extra={"job": ref.job_id, "stage": key, "error": str(exc)})
        return Outcome("failed", error=str(exc))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning(
            "stage error",
            exc_info=True,
            extra={"job": ref.job_id, "stage": key, "attempt": attempt, "error": reason},
        )
        if attempt < max_attempts:
            return Outcome("retry", error=reason)
        jobs.job_failed(ref, key, f"{reason} (after {attempt} attempts)")
        return Outcome("failed", error=reason)
    seconds = time.perf_counter() - started
    log.info(
        "stage finished",
        extra={"job": ref.job_id, "stage": key, "status": status, "seconds": round(seconds, 3)},
    )
    nxt = jobs.stage_finished(ref, key, status=status, seconds=seconds, note=note, parts=parts)
    return Outcome(status, nxt)
