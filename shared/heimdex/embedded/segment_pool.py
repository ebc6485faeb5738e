"""Embedded: segments of long media run in a pool of worker processes, one per CPU core.

Each worker process builds its own stage context (settings, blob stores, models loaded once per
process) and runs one segment task at a time with single-threaded models: on a few cores, N
single-threaded decoders and recognisers beat one N-threaded one, and the GIL-bound parts of
decoding and shot detection run side by side. Job state stays with the dispatcher, in the parent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from heimdex.adapters import build_derived
from heimdex.adapters.sources import RoutingSourceStore
from heimdex.config import Settings
from heimdex.core.context import StageContext
from heimdex.core.executor import call_here
from heimdex.domain import AssetRef
from heimdex.models import Models

log = logging.getLogger(__name__)

_make_context: Callable[[AssetRef, int | None], StageContext] | None = None


def _init_worker(settings: Settings) -> None:
    global _make_context
    import signal

    import cv2

    # Ctrl-C reaches the whole process group: the parent decides what happens to the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    cv2.setNumThreads(1)
    derived, sources, models = build_derived(settings), RoutingSourceStore(settings), Models(settings)

    def make(ref: AssetRef, part: int | None) -> StageContext:
        return StageContext(ref, settings, derived, sources.for_org(ref.org_id), models, db=None, part=part)

    _make_context = make


def _run_in_worker(ref: AssetRef, part: int | None, stage: str) -> dict[str, Any]:
    assert _make_context is not None, "worker not initialised"
    return call_here(_make_context(ref, part), stage)


class SegmentPool:
    """Runs segment tasks in worker processes; a crashed worker fails only its task (which the
    dispatcher retries) and the pool is started afresh."""

    def __init__(self, settings: Settings) -> None:
        self.processes = settings.segment_processes or os.cpu_count() or 1
        # Each process gets its share of the cores the models were configured for.
        self.settings = settings.model_copy(
            update={
                "asr_threads": max(1, settings.asr_threads // self.processes),
                "torch_threads": 1,
                "decode_threads": 1,
            }
        )
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._interrupted = False

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._interrupted:  # a task already under way must not start a new pool
                raise RuntimeError("the run was interrupted")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.settings,),
                )
            return self._pool

    def call(self, ctx: StageContext, stage: str) -> dict[str, Any]:
        """An executor `call`: run the stage for ctx's segment in a worker process."""
        pool = self._executor()
        try:
            return pool.submit(_run_in_worker, ctx.ref, ctx.part, stage).result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(f"segment worker process died: {exc}") from exc

    def pids(self) -> list[int]:
        """The worker processes' ids (for resource accounting)."""
        with self._lock:
            return list(self._pool._processes) if self._pool and self._pool._processes else []

    def terminate(self) -> None:
        """Interrupted: end the worker processes now (their segment tasks fail and are not retried),
        and start no new ones. Does not wait on the executor, whose queues may be left mid-message
        by a killed worker: the processes themselves are waited for, and killed if they linger."""
        with self._lock:
            self._interrupted = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((pool._processes or {}).values())
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
