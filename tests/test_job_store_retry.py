"""A completion whose bookkeeping loses a race is recorded again by the job store, never by running
the stage again: the retry rule, and the PostgreSQL store against a real server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from google.api_core import exceptions as gexc
from psycopg_pool import PoolTimeout

from heimdex.adapters import firestore_jobs, pg_jobs
from heimdex.adapters.pg_jobs import PgJobStore
from heimdex.domain import AssetRef, make_asset_id
from heimdex.embedded.engine import Engine
from heimdex.retry import backoff_s, retry_call

ORG = "retry-org"


class FaultyDatabase:
    """The real database, with a fault after (or instead of) chosen transactions."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.lose_next_answer = False  # commit, then fail as a connection cut before the answer would
        self.down = False  # every transaction fails as if no connection could be had
        self.calls = 0

    @contextmanager
    def org_tx(self, org_id: str) -> Iterator[psycopg.Connection[Any]]:
        self.calls += 1
        if self.down:
            raise PoolTimeout("couldn't get a connection after 30.00 sec")
        with self.db.org_tx(org_id) as conn:
            yield conn
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def new_ref(name: str) -> AssetRef:
    source = f"/retry/{name}.mp4"
    return AssetRef(ORG, make_asset_id(ORG, source, "1"), source, "1")


def test_retry_call_is_bounded_and_keeps_other_errors() -> None:
    calls: list[int] = []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 2:
            raise TimeoutError("lost")
        return "done"

    assert retry_call(flaky, retryable=lambda e: isinstance(e, TimeoutError), base=0.001) == "done"
    assert calls == [0, 1, 2]
    calls.clear()
    with pytest.raises(TimeoutError):
        retry_call(flaky, retryable=lambda e: isinstance(e, TimeoutError), attempts=2, base=0.001)
    assert calls == [0, 1]
    calls.clear()
    with pytest.raises(TimeoutError):
        retry_call(flaky, retryable=lambda e: False, base=0.001)
    assert calls == [0]
    assert all(0 <= backoff_s(n, base=0.05, cap=2.0) <= min(2.0, 0.05 * 2**n) for n in range(12))


def test_which_failures_are_worth_another_transaction() -> None:
    assert pg_jobs.lost_race(psycopg.errors.DeadlockDetected())
    assert pg_jobs.lost_race(psycopg.errors.SerializationFailure())
    assert pg_jobs.lost_race(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not pg_jobs.lost_race(PoolTimeout("couldn't get a connection"))  # down: answer 503 now
    assert not pg_jobs.lost_race(psycopg.errors.QueryCanceled())
    assert not pg_jobs.lost_race(ValueError("a bug"))
    assert firestore_jobs.lost_race(ValueError("Failed to commit transaction in 20 attempts."))
    assert firestore_jobs.lost_race(gexc.Aborted("Transaction lock timeout"))
    assert firestore_jobs.lost_race(gexc.ServiceUnavailable("try again"))
    assert not firestore_jobs.lost_race(gexc.NotFound("no such document"))
    assert not firestore_jobs.lost_race(ValueError("a bug"))


def test_completion_whose_answer_was_lost_hands_on_what_it_unlocked(engine: Engine) -> None:
    db = FaultyDatabase(engine.db)
    jobs = PgJobStore(db)  # type: ignore[arg-type]
    ref = new_ref("lost-answer")
    assert jobs.create(ref, restart=True)
    assert jobs.stage_started(ref, "probe") == 1
    db.lose_next_answer = True
    # The first transaction committed, then its connection "dropped": the retry finds probe recorded
    # and returns what that completion unlocked, so the caller enqueues them (once, by task name).
    assert jobs.stage_finished(ref, "probe", status="done", seconds=0.1) == ["asr", "shots"]
    state = jobs.get(ref)
    assert state is not None
    assert state["stages"]["probe"]["status"] == "done" and state["stages"]["probe"]["attempts"] == 1
    assert state["stages"]["asr"] == {"status": "queued"} and state["stages"]["shots"] == {"status": "queued"}
    # A plain duplicate (no lost answer) still hands on nothing.
    assert jobs.stage_finished(ref, "probe", status="done", seconds=0.1) == []


def test_database_down_is_not_retried_in_the_store(engine: Engine) -> None:
    db = FaultyDatabase(engine.db)
    jobs = PgJobStore(db)  # type: ignore[arg-type]
    ref = new_ref("down")
    assert jobs.create(ref, restart=True)
    db.down, db.calls = True, 0
    with pytest.raises(PoolTimeout):
        jobs.stage_finished(ref, "probe", status="done", seconds=0.1)
    assert db.calls == 1  # the stage answers 503 at once; the queue retries later


def test_simultaneous_completions_enqueue_the_fan_in_once(engine: Engine) -> None:
    jobs = PgJobStore(engine.db)
    ref = new_ref("fan-in")
    assert jobs.create(ref, restart=True)
    assert jobs.stage_finished(ref, "probe", status="done", seconds=0.1) == ["asr", "shots"]
    assert jobs.stage_finished(ref, "shots", status="done", seconds=0.1) == ["ocr", "vision", "faces"]
    deliveries = ["asr", "ocr", "vision", "faces"] * 2
    barrier = threading.Barrier(len(deliveries))

    def finish(stage: str) -> list[str]:
        barrier.wait()
        return jobs.stage_finished(ref, stage, status="done", seconds=0.1)

    with ThreadPoolExecutor(len(deliveries)) as pool:
        results = list(pool.map(finish, deliveries))
    assert sorted(results, key=len) == [[]] * 7 + [["index"]], results


def test_a_start_that_waits_out_a_transactions_lock_is_retried(engine: Engine, firestore_client: Any) -> None:
    """A fan-in transaction holds the job document's lock; the emulator aborts a write that waits
    for it longer than ~2 s ("Transaction lock timeout", not applied). `stage_started` tries again
    itself instead of failing the delivery (a CI run lost a task to this after the queue's retries).
    The lock is held until the first try has been aborted, however long that takes."""
    from google.cloud import firestore

    jobs = firestore_jobs.FirestoreJobStore(firestore_client, "heimdex_jobs", engine.db, ttl_days=1)
    ref = new_ref("locked-start")
    assert jobs.create(ref, restart=True)
    held, aborted = threading.Event(), threading.Event()

    class FirstAbort(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = str(getattr(record, "error", ""))
            if getattr(record, "what", "").startswith("start probe") and "Transaction lock timeout" in error:
                aborted.set()

    @firestore.transactional  # type: ignore[misc]
    def hold(transaction: Any) -> None:
        firestore_client.collection("heimdex_jobs").document(ref.job_id).get(transaction=transaction)
        held.set()  # the read holds the document's lock until this transaction ends
        aborted.wait(120)

    retry_log = logging.getLogger("heimdex.retry")
    handler, level = FirstAbort(), retry_log.level
    retry_log.addHandler(handler)
    retry_log.setLevel(logging.INFO)
    holder = threading.Thread(target=hold, args=(firestore_client.transaction(),))
    holder.start()
    try:
        assert held.wait(60)
        assert jobs.stage_started(ref, "probe") == 1
        assert aborted.is_set(), "the first try was not aborted"
    finally:
        retry_log.removeHandler(handler)
        retry_log.setLevel(level)
        aborted.set()
        holder.join(60)
    state = jobs.get(ref)
    assert state is not None
    assert state["stages"]["probe"]["status"] == "running" and state["stages"]["probe"]["attempts"] == 1
