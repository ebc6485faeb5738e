"""In-process dispatch: the embedded stand-in for Cloud Tasks.

A thread pool runs (job, task) pairs. Each finished task returns the tasks to enqueue next, so
stages of one file overlap where the graph allows (speech recognition runs while shots, OCR and
vision work), and several files share the pool. Whole-file stages run in these threads (decoding,
CTranslate2, torch, OpenCV and Tesseract work outside the GIL); the segments of long media run in
a process pool (`SegmentPool`), one process per core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from heimdex.core.context import StageContext
from heimdex.core.executor import StageCall, call_here, run_stage
from heimdex.core.graph import FIRST, LAST, parse_task_key
from heimdex.core.jobs import JobStore
from heimdex.domain import AssetRef
from heimdex.embedded.segment_pool import SegmentPool

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.5


@dataclass
class JobResult:
    ref: AssetRef
    status: str = "running"  # running | ready | failed
    error: str | None = None
    seconds: float = 0.0
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # task -> (start, end) in the job
    retries: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: threading.Event = field(default_factory=threading.Event)


class LocalDispatcher:
    def __init__(
        self,
        make_context: Callable[[AssetRef], StageContext],
        jobs: JobStore,
        *,
        workers: int,
        max_attempts: int,
        segments: SegmentPool | None = None,
        on_finish: Callable[[JobResult], None] | None = None,
    ) -> None:
        self.make_context = make_context
        self.jobs = jobs
        self.max_attempts = max_attempts
        self.segments = segments
        self.on_finish = on_finish
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage")
        # Segment tasks queue here; each of these threads hands one at a time to a process.
        self.segment_threads = (
            ThreadPoolExecutor(max_workers=segments.processes, thread_name_prefix="segment")
            if segments
            else None
        )
        self.results: dict[str, JobResult] = {}
        self._finish_lock = threading.Lock()
        self._stopping = threading.Event()

    def submit(self, ref: AssetRef) -> JobResult:
        result = JobResult(ref)
        self.results[ref.job_id] = result
        self.jobs.create(ref, restart=True)
        self._enqueue(ref, FIRST)
        return result

    def _enqueue(self, ref: AssetRef, stage: str, delay: float = 0.0) -> None:
        segmented = parse_task_key(stage)[1] is not None
        if segmented and self.segments and self.segment_threads:
            self.segment_threads.submit(self._run, ref, stage, delay, self.segments.call)
        else:
            self.pool.submit(self._run, ref, stage, delay, call_here)

    def _run(self, ref: AssetRef, stage: str, delay: float, call: StageCall) -> None:
        result = self.results[ref.job_id]
        if result.finished.is_set() or self._stopping.is_set():
            return  # another task of this job failed it, or the run is interrupted: work is moot
        try:
            if delay and self._stopping.wait(delay):
                return
            started = time.perf_counter()
            outcome = run_stage(
                self.make_context(ref), self.jobs, stage, max_attempts=self.max_attempts, call=call
            )
            result.spans[stage] = (started - result.started, time.perf_counter() - result.started)
        except Exception as exc:  # the job store itself failed: end this job, keep the worker
            if self._stopping.is_set():
                return  # interrupted: the database may be closing under it
            log.exception("dispatch failed", extra={"job": ref.job_id, "stage": stage})
            self._finish(result, "failed", f"{stage}: {type(exc).__name__}: {exc}")
            return
        if stage == LAST and outcome.status in ("done", "skipped"):
            # The job is ready in the store: say so even when the run is being interrupted, or the
            # file would be indexed with no run reporting it (the next run finds it unchanged).
            self._finish(result, "ready", None)
            return
        if self._stopping.is_set():
            return
        if outcome.status == "retry":
            result.retries[stage] = result.retries.get(stage, 0) + 1
            self._enqueue(ref, stage, RETRY_BACKOFF_S * 2 ** (result.retries[stage] - 1))
        elif outcome.status == "failed":
            self._finish(result, "failed", f"{stage}: {outcome.error}")
        else:
            for nxt in outcome.next:
                self._enqueue(ref, nxt)
            if not outcome.next:
                self._settle(result)

    def _settle(self, result: JobResult) -> None:
        """A task unlocked nothing: if the job ended elsewhere (failed by another process's sweep) or
        is gone, that is this run's outcome too, rather than a wait for tasks that never come."""
        try:
            job = self.jobs.get(result.ref)
        except Exception:
            log.exception("job state unreadable", extra={"job": result.ref.job_id})
            return
        if job is None:
            self._finish(result, "failed", "the job disappeared while it ran")
        elif job.get("status") in ("ready", "failed"):
            self._finish(result, str(job["status"]), job.get("error"))

    def _finish(self, result: JobResult, status: str, error: str | None) -> None:
        with self._finish_lock:
            if result.finished.is_set():
                return  # the first outcome stands (two segments may fail)
            result.status, result.error = status, error
            result.seconds = time.perf_counter() - result.started
            result.finished.set()
        if self.on_finish:
            self.on_finish(result)

    def wait(self) -> list[JobResult]:
        for result in list(self.results.values()):
            result.finished.wait()
        return list(self.results.values())

    def stop(self) -> None:
        """Interrupted: start no more tasks; those running finish or fail without follow-ups."""
        self._stopping.set()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.segment_threads:
            self.segment_threads.shutdown(wait=True, cancel_futures=True)
