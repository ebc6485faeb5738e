"""Job state in Firestore (cloud): one document per job, every change in a transaction.

The fan-in is decided inside the transaction that records a completion, so whichever stage
finishes last enqueues `index`, once, even when completions race or a delivery is repeated.
Finished jobs get `expire_at`, the field of the database's TTL policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from heimdex.core.graph import FIRST, LAST, record_completion, unlocked_queued
from heimdex.core.sweep import Stall, find_stall
from heimdex.domain import AssetRef
from heimdex.retry import retry_call
from heimdex.vectorstore import store
from heimdex.vectorstore.db import Database


def firestore_client(project: str | None, database: str) -> firestore.Client:
    return firestore.Client(project=project or "heimdex-dev", database=database)


def _now() -> datetime:
    return datetime.now(UTC)


_TRANSIENT = (
    gexc.Aborted,
    gexc.Conflict,
    gexc.DeadlineExceeded,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
)


def lost_race(exc: Exception) -> bool:
    """A transaction worth running again: aborted by contention (raised by a read, or, after the
    client's own 20 immediate commit retries, as ValueError "Failed to commit transaction ..."),
    or the service was briefly unavailable."""
    if isinstance(exc, ValueError):
        return isinstance(exc.__cause__, gexc.Aborted) or "Failed to commit transaction" in str(exc)
    return isinstance(exc, _TRANSIENT)


class FirestoreJobStore:
    def __init__(self, client: firestore.Client, collection: str, db: Database, *, ttl_days: int) -> None:
        self.client = client
        self.jobs = client.collection(collection)
        self.db = db
        self.ttl = timedelta(days=ttl_days)

    def _doc(self, ref: AssetRef) -> Any:
        return self.jobs.document(ref.job_id)

    def _run(self, fn: Any) -> Any:
        return firestore.transactional(fn)(self.client.transaction(max_attempts=20))

    def create(self, ref: AssetRef, *, restart: bool = False) -> bool:
        doc = self._doc(ref)

        def txn(transaction: firestore.Transaction) -> bool:
            snap = doc.get(transaction=transaction)
            if snap.exists and not restart:
                return False
            now = _now()
            transaction.set(
                doc,
                {
                    "org_id": ref.org_id,
                    "asset_id": ref.asset_id,
                    "source": ref.source,
                    "version": ref.version,
                    "status": "running",
                    "stages": {FIRST: {"status": "queued"}},
                    "error": None,
                    "created_at": now,
                    "updated_at": now,
                    "expire_at": None,
                },
            )
            return True

        created: bool = self._run(txn)
        if created:
            with self.db.org_tx(ref.org_id) as conn:
                store.upsert_processing(conn, ref)
        return created

    def _update(self, doc: Any, fields: dict[str, Any], what: str) -> None:
        """A write outside any transaction. It still waits for the document's lock while a fan-in
        transaction holds it, and is aborted unapplied ("Transaction lock timeout") when that takes
        too long: tried again here, so a burst of transactions does not use up a task's deliveries."""
        retry_call(
            lambda _: doc.update(fields),
            retryable=lambda exc: isinstance(exc, gexc.Aborted),
            attempts=8,
            base=0.2,
            cap=4.0,
            what=what,
        )

    def stage_started(self, ref: AssetRef, stage: str) -> int:
        # No transaction: an atomic increment does not contend with the fan-in transactions of the
        # stages running beside this one (contended transactions back off for seconds).
        doc = self._doc(ref)
        self._update(
            doc,
            {
                f"stages.{stage}.status": "running",
                f"stages.{stage}.attempts": firestore.Increment(1),
                f"stages.{stage}.started": _now(),
                "updated_at": _now(),
            },
            f"start {stage} of {ref.job_id}",
        )
        state = (doc.get(field_paths=[f"stages.{stage}"]).to_dict() or {}).get("stages", {}).get(stage, {})
        return int(state.get("attempts", 1))

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
        doc = self._doc(ref)

        def record(attempt: int) -> list[str]:
            def txn(transaction: firestore.Transaction) -> list[str]:
                snap = doc.get(transaction=transaction)
                if not snap.exists or snap.get("status") != "running":
                    return []
                stages: dict[str, dict[str, Any]] = snap.get("stages") or {}
                nxt = record_completion(
                    stages, stage, status=status, seconds=seconds, note=note, at=_now(), parts=parts
                )
                if nxt is None:
                    # A duplicate delivery; or, on a retry, possibly this call's own earlier commit
                    # whose answer was lost: hand on what it unlocked (task names dedupe).
                    return unlocked_queued(stages, stage) if attempt else []
                update: dict[str, Any] = {"stages": stages, "updated_at": _now()}
                if stage == LAST:
                    update.update(status="ready", expire_at=_now() + self.ttl)
                transaction.update(doc, update)
                return nxt

            result: list[str] = self._run(txn)
            return result

        # Contended transactions give up after the client's own retries; the stage's work is done,
        # so record it again here (with jittered backoff) rather than hand the task back to the
        # queue, which would run the whole stage again.
        return retry_call(record, retryable=lost_race, attempts=8, what=f"record {stage} of {ref.job_id}")

    def job_failed(self, ref: AssetRef, stage: str, error: str) -> None:
        reason = f"{stage}: {error}"
        self._update(
            self._doc(ref),
            {
                f"stages.{stage}.status": "failed",
                f"stages.{stage}.error": error,
                "status": "failed",
                "error": reason,
                "updated_at": _now(),
                "expire_at": _now() + self.ttl,
            },
            f"fail {stage} of {ref.job_id}",
        )
        with self.db.org_tx(ref.org_id) as conn:
            store.mark_failed(conn, ref, reason)

    def sweep(self, now: datetime, deadlines: Mapping[str, float]) -> list[Stall]:
        swept = []
        for snap in self.jobs.where(filter=FieldFilter("status", "==", "running")).stream():
            if find_stall({"job_id": snap.id, **(snap.to_dict() or {})}, now, deadlines) is not None:
                stall = self.sweep_job(snap.id, now, deadlines)
                if stall is not None:
                    swept.append(stall)
        return swept

    def sweep_job(self, job_id: str, now: datetime, deadlines: Mapping[str, float]) -> Stall | None:
        """Fail one job if it is stalled, judged inside a transaction: a completion recorded since the
        job was listed is seen (or makes this transaction retry), and a later one finds it failed."""
        doc = self.jobs.document(job_id)

        def txn(transaction: firestore.Transaction) -> tuple[Stall, dict[str, Any]] | None:
            snap = doc.get(transaction=transaction)
            job = {"job_id": job_id, **(snap.to_dict() or {})} if snap.exists else None
            stall = find_stall(job, now, deadlines)
            if job is None or stall is None:
                return None
            transaction.update(
                doc,
                {
                    f"stages.{stall.key}.status": "failed",
                    f"stages.{stall.key}.error": stall.reason,
                    "status": "failed",
                    "error": f"{stall.key}: {stall.reason}",
                    "updated_at": _now(),
                    "expire_at": _now() + self.ttl,
                },
            )
            return stall, job

        found: tuple[Stall, dict[str, Any]] | None = self._run(txn)
        if found is None:
            return None
        stall, job = found
        ref = AssetRef(job["org_id"], str(job.get("asset_id", "")), stall.source, str(job.get("version", "")))
        with self.db.org_tx(ref.org_id) as conn:
            store.mark_failed(conn, ref, f"{stall.key}: {stall.reason}")
        return stall

    def get(self, ref: AssetRef) -> dict[str, Any] | None:
        return self.get_by_id(ref.job_id, org_id=ref.org_id)

    def get_by_id(self, job_id: str, *, org_id: str) -> dict[str, Any] | None:
        """The job, only if it belongs to `org_id` (another organisation's job reads as absent)."""
        snap = self.jobs.document(job_id).get()
        data = snap.to_dict() if snap.exists else None
        if not data or data.get("org_id") != org_id:
            return None
        return {"job_id": job_id, **data}
