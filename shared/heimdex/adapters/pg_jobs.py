"""Job state in the index's own PostgreSQL (embedded default); row locks serialise the fan-in."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from heimdex.core.graph import FIRST, LAST, record_completion, unlocked_queued
from heimdex.core.sweep import Stall, find_stall
from heimdex.domain import AssetRef
from heimdex.retry import retry_call
from heimdex.vectorstore import store
from heimdex.vectorstore.db import Database


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def lost_race(exc: Exception) -> bool:
    """A transaction that may succeed if run again: a deadlock or serialisation victim, or a
    connection cut mid-transaction. Not a pool timeout: the database is down, and the stage should
    answer 503 at once rather than wait out the backoff."""
    if isinstance(exc, PoolTimeout):
        return False
    return isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected) or (
        isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
    )


class PgJobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, ref: AssetRef, *, restart: bool = False) -> bool:
        with self.db.org_tx(ref.org_id) as conn:
            row = conn.execute(
                "SELECT status FROM jobs WHERE job_id = %s FOR UPDATE", (ref.job_id,)
            ).fetchone()
            if row is not None and not restart:
                return False
            stages = json.dumps({FIRST: {"status": "queued"}})
            conn.execute(
                """INSERT INTO jobs (job_id, org_id, asset_id, source, status, stages)
                   VALUES (%s, %s, %s, %s, 'running', %s)
                   ON CONFLICT (job_id) DO UPDATE SET status = 'running', stages = EXCLUDED.stages,
                     error = NULL, created_at = now(), updated_at = now()""",
                (ref.job_id, ref.org_id, ref.asset_id, ref.source, stages),
            )
            store.upsert_processing(conn, ref)
            return True

    @staticmethod
    def _lock(conn: Any, ref: AssetRef) -> tuple[dict[str, dict[str, Any]], str | None]:
        row = conn.execute(
            "SELECT stages, status FROM jobs WHERE job_id = %s FOR UPDATE", (ref.job_id,)
        ).fetchone()
        return (row[0], row[1]) if row else ({}, None)

    @staticmethod
    def _save(
        conn: Any, ref: AssetRef, stages: dict[str, Any], status: str = "running", error: str | None = None
    ) -> None:
        conn.execute(
            "UPDATE jobs SET stages = %s, status = %s, error = %s, updated_at = now() WHERE job_id = %s",
            (json.dumps(stages), status, error, ref.job_id),
        )

    def stage_started(self, ref: AssetRef, stage: str) -> int:
        with self.db.org_tx(ref.org_id) as conn:
            stages, status = self._lock(conn, ref)
            if status is None:
                raise KeyError(f"no job {ref.job_id}")
            state = stages.setdefault(stage, {})
            state.update(status="running", attempts=state.get("attempts", 0) + 1, started=_now())
            self._save(conn, ref, stages, status)
            return int(state["attempts"])

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

        def record(attempt: int) -> list[str]:
            with self.db.org_tx(ref.org_id) as conn:
                stages, job_status = self._lock(conn, ref)
                if job_status != "running":
                    return []  # a duplicate delivery after the job ended changes nothing
                nxt = record_completion(
                    stages, stage, status=status, seconds=seconds, note=note, at=_now(), parts=parts
                )
                if nxt is None:
                    # Already recorded: a duplicate; or, on a retry, possibly this call's own first
                    # commit, whose answer was lost with its connection: hand on what it unlocked.
                    return unlocked_queued(stages, stage) if attempt else []
                self._save(conn, ref, stages, "ready" if stage == LAST else "running")
                return nxt

        # A completion that loses a race is recorded again here, not by running the stage again.
        return retry_call(record, retryable=lost_race, what=f"record {stage} of {ref.job_id}")

    def job_failed(self, ref: AssetRef, stage: str, error: str) -> None:
        with self.db.org_tx(ref.org_id) as conn:
            stages, _ = self._lock(conn, ref)
            self._fail(conn, ref, stages, stage, error)

    @classmethod
    def _fail(cls, conn: Any, ref: AssetRef, stages: dict[str, Any], stage: str, error: str) -> None:
        stages.setdefault(stage, {}).update(status="failed", error=error, finished=_now())
        cls._save(conn, ref, stages, "failed", f"{stage}: {error}")
        store.mark_failed(conn, ref, f"{stage}: {error}")

    def sweep(
        self,
        now: datetime,
        deadlines: Mapping[str, float],
        busy: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[Stall]:
        """Running jobs are listed across organisations on an owner connection (the embedded server's
        superuser is not bound by row-level security); each one that looks stalled, and that `busy`
        does not report still worked on, is locked in its organisation's transaction and judged
        again there before it is failed."""
        # As the owner: the application role sees no organisation's rows without one set.
        with psycopg.connect(self.db.url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
            running = cur.execute(
                "SELECT job_id, org_id, source, status, stages, updated_at FROM jobs WHERE status = 'running'"
            ).fetchall()
        swept = []
        for job in running:
            if find_stall(job, now, deadlines) is not None and not (busy and busy(job)):
                stall = self.sweep_job(job["job_id"], job["org_id"], now, deadlines)
                if stall is not None:
                    swept.append(stall)
        return swept

    def sweep_job(
        self, job_id: str, org_id: str, now: datetime, deadlines: Mapping[str, float]
    ) -> Stall | None:
        """Fail one job if it is stalled, judged under its row lock: a completion that committed
        since the job was listed is seen, and one that comes later finds the job failed."""
        with self.db.org_tx(org_id) as conn, conn.cursor(row_factory=dict_row) as cur:
            job = cur.execute(
                "SELECT job_id, org_id, asset_id, source, status, stages, updated_at FROM jobs"
                " WHERE job_id = %s FOR UPDATE",
                (job_id,),
            ).fetchone()
            stall = find_stall(job, now, deadlines)
            if job is None or stall is None:
                return None
            ref = AssetRef(job["org_id"], job["asset_id"], job["source"], "")
            self._fail(conn, ref, job["stages"], stall.key, stall.reason)
            return stall

    def get(self, ref: AssetRef) -> dict[str, Any] | None:
        return self.get_by_id(ref.job_id, org_id=ref.org_id)

    def get_by_id(self, job_id: str, *, org_id: str) -> dict[str, Any] | None:
        with self.db.org_tx(org_id) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("SELECT * FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
