"""Run one stage of one job and record the outcome: the same code behind every dispatcher.

Whoever delivers a (job, stage) task, the in-process pool or a Cloud Tasks HTTP call, calls
`run_stage` and then enqueues exactly the stages it returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from heimdex.domain import MediaError, StageSkipped
from heimdex.models import ModelUnavailable
from heimdex.pipeline import STAGES, JobStore, check_delivery
from heimdex.stages.context import StageContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "skipped", "retry", "failed", "duplicate", "ignored"]
    next: list[str] = field(default_factory=list)
    error: str | None = None


def run_stage(ctx: StageContext, jobs: JobStore, stage: str, *, max_attempts: int) -> Outcome:
    ref = ctx.ref
    delivery = check_delivery(jobs.get(ref), stage)  # at-least-once, any order: see check_delivery
    if delivery.verdict != "run":
        log.info("delivery not run", extra={"job": ref.job_id, "stage": stage, "reason": delivery.reason})
        if delivery.verdict == "early":
            return Outcome("retry", error=delivery.reason)
        return Outcome(delivery.verdict, list(delivery.next), delivery.reason)
    attempt = jobs.stage_started(ref, stage)
    started = time.perf_counter()
    note = None
    try:
        if attempt <= ctx.settings.fail_first_attempts.get(stage, 0):
            raise RuntimeError(f"injected fault in {stage}, attempt {attempt}")
        STAGES[stage].function()(ctx)
        status: Literal["done", "skipped"] = "done"
    except (StageSkipped, ModelUnavailable) as exc:
        note = str(exc)
        ctx.write_output(stage, {"skipped": note})
        status = "skipped"
    except MediaError as exc:
        jobs.job_failed(ref, stage, str(exc))
        log.info("stage failed", extra={"job": ref.job_id, "stage": stage, "error": str(exc)})
        return Outcome("failed", error=str(exc))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning(
            "stage error",
            exc_info=True,
            extra={"job": ref.job_id, "stage": stage, "attempt": attempt, "error": reason},
        )
        if attempt < max_attempts:
            return Outcome("retry", error=reason)
        jobs.job_failed(ref, stage, f"{reason} (after {attempt} attempts)")
        return Outcome("failed", error=reason)
    seconds = time.perf_counter() - started
    log.info(
        "stage finished",
        extra={"job": ref.job_id, "stage": stage, "status": status, "seconds": round(seconds, 3)},
    )
    return Outcome(status, jobs.stage_finished(ref, stage, status=status, seconds=seconds, note=note))
