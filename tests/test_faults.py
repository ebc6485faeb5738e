"""Faults and cross-organisation probes on the cloud path, on the same local stack as `heimdex dev`
(see test_cloud_path.py).

Each test breaks something a real deployment sees break: a stage instance killed mid-task, PostgreSQL
restarted under the index stage, Firestore contention, tasks delivered twice or out of order, a crash
between recording a stage and enqueueing the next, an event replayed after success. Each ends with
every asset indexed exactly once (one job, one set of scene rows) or failed with a reason, none lost.
docs/RELIABILITY.md quotes the timings these tests print.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from heimdex.dev.samples import Segment
from heimdex.dev.stack import Stack
from heimdex.domain import AssetRef, make_asset_id
from tests import waiting
from tests.conftest import make_clips

pytestmark = pytest.mark.slow

TIMEOUT_S = float(os.environ.get("HEIMDEX_FAULT_TIMEOUT_S", "600"))
STAGES = ("probe", "asr", "shots", "ocr", "vision", "index")
CLIPS = {
    "harbour": [
        Segment(6.0, speech="Fishing boats returned to the harbour before the storm reached the coast."),
        Segment(6.0, speech="The harbour master closed the gates and warned every captain by radio."),
        Segment(5.0, caption="STORM WARNING"),
    ],
    "bakery": [
        Segment(6.0, speech="The village bakery sells fresh rye bread every morning at six."),
        Segment(5.0, caption="OPEN DAILY"),
    ],
    "tram": [
        Segment(6.0, speech="A new tram line will connect the university with the central station."),
        Segment(5.0, caption="CITY TRANSPORT"),
    ],
    "beehive": [
        Segment(6.0, speech="Beekeepers inspected the hives and collected honey from the meadow."),
        Segment(5.0, caption="SUMMER HONEY"),
    ],
    "regatta": [
        Segment(6.0, speech="Rowing crews from four colleges raced in the annual river regatta."),
        Segment(5.0, caption="RACE RESULTS"),
    ],
    "quarry": [
        Segment(6.0, speech="Workers at the old quarry cut granite blocks for the cathedral."),
        Segment(5.0, caption="STONE MASONS"),
    ],
    "orchestra": [
        Segment(6.0, speech="The youth orchestra rehearsed the symphony in the town hall."),
        Segment(5.0, caption="CONCERT TONIGHT"),
    ],
}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("fault-media"), CLIPS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A short pool timeout, so that a request that finds PostgreSQL down fails within seconds.
    s = Stack(tmp_path_factory.mktemp("fault-stack"), extra_env={"HEIMDEX_DB_POOL_TIMEOUT_S": "3"})
    s.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = s.info["firestore_emulator_host"]
    os.environ["STORAGE_EMULATOR_HOST"] = s.info["storage_emulator_host"]
    yield s
    s.stop()
    if TIMINGS:
        print("fault timings (s):", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


# --- helpers -------------------------------------------------------------------------------------


wait_for = partial(waiting.wait_for, timeout=TIMEOUT_S)


def gcs_bucket(stack: Stack, name: str | None = None) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    client = storage.Client(project=stack.project, credentials=AnonymousCredentials())
    return client.bucket(name or stack.bucket)


def upload(stack: Stack, clip: Path, name: str) -> str:
    gcs_bucket(stack).blob(name).upload_from_filename(str(clip), content_type="video/mp4")
    return f"gs://{stack.bucket}/{name}"


def firestore_jobs(stack: Stack) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=stack.project).collection("heimdex_jobs")


def jobs_for(stack: Stack, source: str) -> list[dict[str, Any]]:
    docs = firestore_jobs(stack).where("source", "==", source).stream()
    return [{"job_id": d.id, **(d.to_dict() or {})} for d in docs]


def job_for(stack: Stack, source: str) -> dict[str, Any] | None:
    found = jobs_for(stack, source)
    return found[0] if found else None


def stage_state(stack: Stack, source: str, stage: str) -> dict[str, Any]:
    job = job_for(stack, source) or {}
    state: dict[str, Any] = job.get("stages", {}).get(stage, {})
    return state


def finished(stack: Stack, source: str) -> dict[str, Any] | None:
    job = job_for(stack, source)
    return job if job and job["status"] in ("ready", "failed") else None


def owner_rows(stack: Stack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """As the database owner, across organisations (RLS does not apply): what is really stored."""
    with psycopg.connect(stack.info["database_url"], autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def assert_indexed_once(stack: Stack, source: str) -> dict[str, Any]:
    """One job, ready; one asset row for the source; its scene rows once each; nothing else."""
    (job,) = jobs_for(stack, source)
    assert job["status"] == "ready", job
    assets = owner_rows(
        stack, "SELECT org_id, asset_id, status, scenes FROM assets WHERE source = %s", source
    )
    assert [(a[0], a[1], a[2]) for a in assets] == [(job["org_id"], job["asset_id"], "ready")], assets
    rows = owner_rows(
        stack,
        "SELECT count(*), count(DISTINCT idx), count(DISTINCT (start_s, end_s)) FROM scenes"
        " WHERE source = %s",
        source,
    )[0]
    assert rows[0] == rows[1] == rows[2] == assets[0][3] > 0, (rows, assets)
    return job


def scene_versions(stack: Stack, source: str) -> list[tuple[Any, ...]]:
    """Each scene row's transaction id: unchanged rows prove nothing re-indexed them."""
    return owner_rows(stack, "SELECT idx, xmin::text FROM scenes WHERE source = %s ORDER BY idx", source)


class Tasks:
    """The Cloud Tasks emulator, through the official client: pause/resume a stage's queue and read
    what the emulator recorded about a task's deliveries."""

    def __init__(self, stack: Stack) -> None:
        from heimdex.adapters.cloud_tasks import CloudTasksDispatcher
        from heimdex.config import Settings

        settings = Settings(
            home=stack.workdir / "home",
            database_url=stack.info["database_url"],
            project=stack.project,
            tasks_emulator_host=stack.info["tasks_emulator_host"],
            stage_urls=stack.info["stage_urls"],
        )
        self.dispatcher = CloudTasksDispatcher(settings)
        self.client = self.dispatcher.client

    def pause(self, stage: str) -> None:
        self.client.pause_queue(name=self.dispatcher.queue_path(stage))

    def resume(self, stage: str) -> None:
        self.client.resume_queue(name=self.dispatcher.queue_path(stage))

    def pending(self, stage: str, job_id: str) -> list[Any]:
        tasks = self.client.list_tasks(parent=self.dispatcher.queue_path(stage))
        return [t for t in tasks if t.name.endswith(f"/{job_id}-{stage}")]


def post_task(stack: Stack, stage: str, ref: AssetRef | dict[str, str]) -> requests.Response:
    """Deliver a stage task by hand, as Cloud Tasks would (at least once, in any order)."""
    payload = (
        ref
        if isinstance(ref, dict)
        else {"org_id": ref.org_id, "asset_id": ref.asset_id, "source": ref.source, "version": ref.version}
    )
    return requests.post(stack.info["stage_urls"][stage], json=payload, timeout=120)


def ref_of(job: dict[str, Any]) -> AssetRef:
    return AssetRef(job["org_id"], job["asset_id"], job["source"], job["version"])


def search(stack: Stack, q: str, org_token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {org_token or stack.info['token']}"}
    params: dict[str, str | int] = {"q": q, "k": 5}
    return requests.get(stack.info["search_url"], params=params, headers=headers, timeout=30)


def finalized_headers(stack: Stack) -> dict[str, str]:
    """Binary-mode CloudEvent headers of a bucket object's finalize event (as Eventarc sends them)."""
    return {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{stack.bucket}",
        "Content-Type": "application/json",
    }


# --- faults ----------------------------------------------------------------------------------------


def test_concurrent_uploads_fan_in_once_each(stack: Stack, clips: dict[str, Path]) -> None:
    """Firestore contention, end to end: three uploads at once, their stages interleaved on every
    queue and completing side by side; each job enqueues `index` once and indexes once."""
    started = time.monotonic()
    names = {"bakery": "default", "tram": "acme", "beehive": "default"}  # two organisations
    sources = [upload(stack, clips[n], f"{org}/batch/{n}.mp4") for n, org in names.items()]
    for source in sources:
        wait_for(lambda s=source: finished(stack, s), f"{source} to finish")
    TIMINGS["three_concurrent_uploads"] = time.monotonic() - started
    for source in sources:
        job = assert_indexed_once(stack, source)
        assert job["stages"]["index"]["attempts"] == 1
        assert all(job["stages"][s]["status"] == "done" for s in ("probe", "asr", "shots", "index"))


def test_concurrent_completions_on_one_job_enqueue_the_fan_in_once(stack: Stack) -> None:
    """Firestore contention, head on: asr, ocr, vision and faces of one job finish at the same instant, each
    delivered twice: eight transactions on one document. The job store retries a transaction that
    loses the race itself (no stage is delivered again for it): every call returns, `index` is
    recorded queued once, and only `index` is handed on. A retried call whose first commit landed
    but whose answer was lost cannot tell that commit from another caller's, so it hands `index` on
    again (FirestoreJobStore.stage_finished); the queue's task names make that a no-op, so more than
    one caller may name it."""
    from heimdex.adapters.firestore_jobs import FirestoreJobStore, firestore_client

    assert stack.db is not None
    jobs = FirestoreJobStore(
        firestore_client(stack.project, "(default)"), "heimdex_jobs", stack.db, ttl_days=1
    )
    started = time.monotonic()
    deliveries = ["asr", "ocr", "vision", "faces"] * 2
    source = f"gs://{stack.bucket}/contention/0.mp4"
    ref = AssetRef("contention", make_asset_id("contention", source, "1"), source, "1")
    assert jobs.create(ref)
    assert jobs.stage_finished(ref, "probe", status="done", seconds=0.1) == ["asr", "shots"]
    assert jobs.stage_finished(ref, "shots", status="done", seconds=0.1) == ["ocr", "vision", "faces"]
    barrier = threading.Barrier(len(deliveries))

    def finish(stage: str) -> list[str]:
        barrier.wait()
        return jobs.stage_finished(ref, stage, status="done", seconds=0.1)

    with ThreadPoolExecutor(len(deliveries)) as pool:
        results = list(pool.map(finish, deliveries))  # any exception would surface here
    handed_on = [r for r in results if r]
    assert handed_on and all(r == ["index"] for r in handed_on), results
    state = jobs.get(ref)
    assert state is not None and state["stages"]["index"] == {"status": "queued"}
    assert all(state["stages"][s]["status"] == "done" for s in ("asr", "ocr", "vision", "faces"))
    TIMINGS["eight_way_contended_fan_in_per_job"] = time.monotonic() - started


def test_stage_process_killed_mid_task_is_restarted_and_redelivered(
    stack: Stack, clips: dict[str, Path]
) -> None:
    """SIGKILL the ASR instance while it transcribes: the stack starts it again (Cloud Run would
    start a new instance), the emulator retries the task it lost, the job completes once."""
    worker = stack.services["stage-asr"]
    pid = worker.proc.pid
    source = upload(stack, clips["harbour"], "default/kill/harbour.mp4")
    wait_for(lambda: stage_state(stack, source, "asr").get("status") == "running", "asr to start", every=0.02)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    job = wait_for(lambda: finished(stack, source), "the job to finish after the kill")
    TIMINGS["asr_killed_to_job_finished"] = time.monotonic() - killed
    assert worker.restarts == 1 and worker.proc.pid != pid
    job = assert_indexed_once(stack, source)
    assert job["stages"]["asr"]["attempts"] == 2, job["stages"]["asr"]  # the killed one, the redelivery
    hits = search(stack, "harbour master warned every captain by radio").json()["results"]
    assert hits and hits[0]["source"] == source


def test_postgres_restart_under_the_index_stage(stack: Stack, clips: dict[str, Path]) -> None:
    """PostgreSQL goes down as `index` is delivered: the stage answers 503 (retry) instead of
    failing the job, and once the database is back the retry reconnects and indexes once. The search
    function's pooled connections, cut by the restart, are replaced without a failed request."""
    tasks = Tasks(stack)
    assert search(stack, "bread").status_code == 200  # the search function holds pooled connections
    tasks.pause("index")
    source = upload(stack, clips["regatta"], "default/pg/regatta.mp4")
    try:
        wait_for(lambda: stage_state(stack, source, "index").get("status") == "queued", "index queued")
        job_id = (job_for(stack, source) or {})["job_id"]
        stack.stop_postgres()
        down = time.monotonic()
        tasks.resume("index")
        (task,) = wait_for(
            lambda: [t for t in tasks.pending("index", job_id) if t.last_attempt.response_status.code == 503],
            "the index stage to answer 503 while PostgreSQL is down",
            timeout=180,
            every=0.05,  # the emulator hides a task while it dispatches it
        )
        assert task.dispatch_count >= 1
        assert (job_for(stack, source) or {})["status"] == "running"  # not failed: retried
    finally:
        stack.start_postgres()
        tasks.resume("index")
    TIMINGS["postgres_down_s"] = time.monotonic() - down
    job = wait_for(lambda: finished(stack, source), "the index retry after the restart")
    TIMINGS["postgres_down_to_job_finished"] = time.monotonic() - down
    job = assert_indexed_once(stack, source)
    assert job["stages"]["index"]["attempts"] in (2, 3), job["stages"]["index"]
    # The search function's pooled connections were cut by the restart; psycopg_pool reconnects with
    # backoff (1, 2, 4 ... s), and until it has, a search answers 503 with Retry-After, never 500.
    answers: list[int] = []

    def searched() -> requests.Response | None:
        resp = search(stack, "rowing crews raced in the river regatta")
        answers.append(resp.status_code)
        return resp if resp.status_code == 200 else None

    resp = wait_for(searched, "the search function to reconnect", timeout=180)
    assert set(answers) <= {200, 503}, answers
    assert resp.json()["results"][0]["source"] == source
    TIMINGS["postgres_down_to_search_200"] = time.monotonic() - down


def test_tasks_out_of_order_and_twice(stack: Stack, clips: dict[str, Path]) -> None:
    """`index` delivered before its needs finished: 503, no attempt recorded, nothing indexed.
    Then `index` delivered twice at the same time: both answer 200, the rows are written once.
    Then the queued task arrives as a third delivery: 200 `duplicate`, nothing re-indexed."""
    tasks = Tasks(stack)
    tasks.pause("asr")
    tasks.pause("index")
    source = upload(stack, clips["quarry"], "default/order/quarry.mp4")
    try:
        wait_for(lambda: stage_state(stack, source, "asr").get("status") == "queued", "asr queued")
        ref = ref_of(job_for(stack, source) or {})
        early = post_task(stack, "index", ref)
        assert early.status_code == 503, early.text
        assert "waits for asr" in early.json()["error"]
        job = job_for(stack, source) or {}
        assert "index" not in job["stages"] and job["status"] == "running"  # no attempt recorded
        assert owner_rows(stack, "SELECT count(*) FROM scenes WHERE source = %s", source) == [(0,)]
        by_hand = post_task(stack, "asr", ref)  # ahead of its queued task: its needs are done, it runs
        assert by_hand.status_code == 200 and by_hand.json()["status"] == "done", by_hand.text

        wait_for(lambda: stage_state(stack, source, "index").get("status") == "queued", "index queued")
        with ThreadPoolExecutor(2) as pool:
            twins = list(pool.map(lambda _: post_task(stack, "index", ref), range(2)))
        assert [r.status_code for r in twins] == [200, 200], [r.text for r in twins]
        assert {r.json()["status"] for r in twins} <= {"done", "duplicate"}, [r.json() for r in twins]
        assert_indexed_once(stack, source)
        before = scene_versions(stack, source)
    finally:
        tasks.resume("asr")  # its queued task is now a duplicate of the hand delivery
        tasks.resume("index")
    wait_for(lambda: not tasks.pending("index", ref.job_id), "the queued index task to be delivered")
    wait_for(lambda: not tasks.pending("asr", ref.job_id), "the queued asr task to be delivered")
    job = assert_indexed_once(stack, source)
    assert scene_versions(stack, source) == before  # the queued deliveries re-indexed nothing
    assert job["stages"]["asr"]["attempts"] == 1
    again = [post_task(stack, s, ref) for s in STAGES]  # every stage once more, after success
    assert [r.status_code for r in again] == [200] * len(STAGES)
    assert {r.json()["status"] for r in again} == {"duplicate"}
    assert scene_versions(stack, source) == before
    assert (job_for(stack, source) or {})["stages"] == job["stages"]


def test_crash_between_recording_a_stage_and_enqueueing_the_next(
    stack: Stack, clips: dict[str, Path]
) -> None:
    """A stage instance dies after its completion is committed but before it enqueues the stages it
    unlocked. Cloud Tasks redelivers the task (it got no answer); the redelivery finds the stage
    finished and enqueues what never was, so the job completes instead of hanging."""
    from heimdex.config import Settings
    from heimdex.core.executor import run_stage
    from heimdex.embedded.engine import Engine

    tasks = Tasks(stack)
    tasks.pause("shots")
    source = upload(stack, clips["orchestra"], "default/crash/orchestra.mp4")
    try:
        wait_for(lambda: stage_state(stack, source, "shots").get("status") == "queued", "shots queued")
        ref = ref_of(job_for(stack, source) or {})
        settings = Settings(
            home=stack.workdir / "home",
            database_url=stack.info["database_url"],
            project=stack.project,
            job_store="firestore",
            derived_bucket=stack.derived_bucket,
        )
        engine = Engine(settings)
        try:  # the stage runs and records its completion, then "crashes": nothing is enqueued
            outcome = run_stage(engine.context(ref), engine.jobs, "shots", max_attempts=3)
        finally:
            engine.close()
        assert outcome.status == "done" and outcome.next == ["ocr", "vision", "faces"]
        assert stage_state(stack, source, "ocr") == {"status": "queued"}  # recorded, never enqueued
    finally:
        tasks.resume("shots")  # the redelivery of the task whose instance died
    wait_for(lambda: finished(stack, source), "the job to finish after the redelivery")
    job = assert_indexed_once(stack, source)
    assert job["stages"]["shots"]["attempts"] == 1  # the redelivery did not run shots again


def test_event_replayed_after_success_changes_nothing(stack: Stack) -> None:
    """The bucket event of an indexed object, delivered again (same id) and as a twin (new id):
    no new job, no re-index, no new task."""
    source = f"gs://{stack.bucket}/default/batch/bakery.mp4"
    job = assert_indexed_once(stack, source)
    before = scene_versions(stack, source)
    blob = gcs_bucket(stack).get_blob("default/batch/bakery.mp4")
    data = {
        "bucket": stack.bucket,
        "name": blob.name,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": "video/mp4",
    }
    headers = finalized_headers(stack)
    answers = []
    for event_id in ("after-1", "after-1", "after-2"):
        resp = requests.post(
            stack.info["ingest_url"],
            data=json.dumps(data),
            headers={**headers, "ce-id": event_id},
            timeout=30,
        )
        assert resp.status_code == 200
        answers.append(resp)
    # Ingest decides synchronously: any job or task an event makes exists before its 200.
    assert jobs_for(stack, source) == [job]
    assert scene_versions(stack, source) == before


def test_ingest_crash_before_the_first_task_is_recovered_by_the_redelivered_event(
    stack: Stack, clips: dict[str, Path]
) -> None:
    """Ingest creates the job, then dies before enqueueing `probe`; the event comes again (it was
    not acknowledged): the job exists, so no second job, but its first task is enqueued now."""
    from heimdex.adapters.cloud_tasks import CloudTasksDispatcher
    from heimdex.cloud.ingest import ingest
    from heimdex.config import Settings
    from heimdex.embedded.engine import Engine

    class Crash(Exception):
        pass

    class DiesBeforeEnqueue:
        def enqueue(self, ref: AssetRef, stage: str) -> None:
            raise Crash(stage)

    source = str(clips["bakery"])  # a path the stage processes can read: no bucket event involved
    settings = Settings(
        home=stack.workdir / "home",
        database_url=stack.info["database_url"],
        project=stack.project,
        job_store="firestore",
        dispatch="cloud_tasks",
        tasks_emulator_host=stack.info["tasks_emulator_host"],
        stage_urls=stack.info["stage_urls"],
        derived_bucket=stack.derived_bucket,
    )
    engine = Engine(settings)
    args: dict[str, Any] = {
        "org_id": "default",
        "source": source,
        "version": "v1",
        "size": clips["bakery"].stat().st_size,
        "name": "bakery.mp4",
        "content_type": "video/mp4",
    }
    try:
        with pytest.raises(Crash):
            ingest(engine, DiesBeforeEnqueue(), **args)
        assert (job_for(stack, source) or {})["stages"] == {"probe": {"status": "queued"}}  # stranded
        again = ingest(engine, CloudTasksDispatcher(settings), **args)
        assert again.status == "duplicate"
    finally:
        engine.close()
    wait_for(lambda: finished(stack, source), "the stranded job to run")
    assert_indexed_once(stack, source)


# --- tenant isolation on the cloud path ------------------------------------------------------------

PROBES: dict[str, int] = {}


def org_token(org: str) -> str:
    from heimdex.api.auth import issue_token
    from heimdex.dev.stack import DEV_SECRET

    return issue_token(os.environ.get("HEIMDEX_JWT_SECRET", DEV_SECRET), org)


def api(stack: Stack, path: str, org: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {org_token(org)}"}
    return requests.get(f"{stack.info['api_url']}{path}", params=params, headers=headers, timeout=30)


def test_cross_org_probes_through_the_api_are_refused(stack: Stack) -> None:
    """Every job of one organisation, asked for with another's token, reads as absent (404);
    search and asset listing show only the token's organisation."""
    every = [{"job_id": d.id, **(d.to_dict() or {})} for d in firestore_jobs(stack).stream()]
    by_org: dict[str, list[str]] = {}
    for job in every:
        by_org.setdefault(job["org_id"], []).append(job["job_id"])
    assert {"default", "acme"} <= set(by_org)
    refused = 0
    for owner, job_ids in by_org.items():
        for job_id in job_ids:
            for org in {"default", "acme", "intruder"} - {owner}:
                resp = api(stack, f"/v1/jobs/{job_id}", org)
                assert resp.status_code == 404, (owner, org, job_id, resp.text)
                refused += 1
            own = api(stack, f"/v1/jobs/{job_id}", owner) if owner in ("default", "acme") else None
            assert own is None or own.status_code == 200
    tram = f"gs://{stack.bucket}/acme/batch/tram.mp4"
    for org, sees_tram in (("acme", True), ("default", False), ("intruder", False)):
        hits = api(stack, "/v1/search", org, q="tram line to the central station", k=10).json()["results"]
        assert (tram in {h["source"] for h in hits}) == sees_tram, (org, hits)
        in_bucket = [h["source"] for h in hits if h["source"].startswith("gs://")]
        assert all(src.startswith(f"gs://{stack.bucket}/{org}/") for src in in_bucket), (org, hits)
        assets = api(stack, "/v1/assets", org).json()["assets"]
        assert all(
            a["source"].startswith(f"gs://{stack.bucket}/{org}/") for a in assets if "gs://" in a["source"]
        )
        refused += 0 if sees_tram else 2
    PROBES["api"] = refused


def test_stage_tasks_naming_another_org_touch_nothing(stack: Stack) -> None:
    """A stage task whose payload names organisation B with A's asset (or an asset id B could
    derive for A's object) reaches no job: 200 `ignored`, and nothing of A's job, rows or blobs, nor
    anything under B, is read or written."""
    source = f"gs://{stack.bucket}/default/batch/bakery.mp4"
    job = assert_indexed_once(stack, source)
    rows = scene_versions(stack, source)
    ref = ref_of(job)
    forged = [
        {"org_id": "intruder", "asset_id": ref.asset_id, "source": ref.source, "version": ref.version},
        {
            "org_id": "intruder",
            "asset_id": make_asset_id("intruder", ref.source, ref.version),
            "source": ref.source,
            "version": ref.version,
        },
        {"org_id": "acme", "asset_id": ref.asset_id, "source": ref.source, "version": ref.version},
    ]
    for stage in STAGES:
        for payload in forged:
            resp = post_task(stack, stage, payload)
            assert resp.status_code == 200 and resp.json()["status"] == "ignored", (stage, payload, resp.text)
    PROBES["stage_tasks"] = len(STAGES) * len(forged)
    assert jobs_for(stack, source) == [job]  # not one attempt counted, nothing rewritten
    assert scene_versions(stack, source) == rows
    assert not [j for j in firestore_jobs(stack).stream() if (j.to_dict() or {}).get("org_id") == "intruder"]
    assert owner_rows(stack, "SELECT count(*) FROM assets WHERE org_id = 'intruder'") == [(0,)]
    derived = gcs_bucket(stack, stack.derived_bucket)
    assert not list(derived.list_blobs(prefix="derived/intruder/"))


def test_derived_blobs_live_under_their_org(stack: Stack) -> None:
    """Every derived object is `derived/{org}/{asset}/...` or `derived/{org}/sidecars/{asset}.json`
    for an asset of that organisation."""
    assets = set(owner_rows(stack, "SELECT org_id, asset_id FROM assets"))
    names = [b.name for b in gcs_bucket(stack, stack.derived_bucket).list_blobs()]
    assert names
    orgs = set()
    for name in names:
        parts = name.split("/")
        assert parts[0] == "derived" and len(parts) >= 4, name
        org, asset = parts[1], parts[3].removesuffix(".json") if parts[2] == "sidecars" else parts[2]
        assert (org, asset) in assets, name
        orgs.add(org)
    assert {"default", "acme"} <= orgs
    PROBES["derived_blobs_checked"] = len(names)


def test_object_org_comes_only_from_its_path(stack: Stack) -> None:
    """Bucket events: the organisation is the object's first path segment, whatever else the event
    says; objects outside an organisation folder, or with a folder that is no valid id, are refused."""
    blob = gcs_bucket(stack).get_blob("acme/batch/tram.mp4")
    base = {
        "bucket": stack.bucket,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": "video/mp4",
    }
    headers = finalized_headers(stack)
    before = sorted(d.id for d in firestore_jobs(stack).stream())
    events = [
        {**base, "name": "acme/batch/tram.mp4", "metadata": {"org_id": "default"}, "org_id": "default"},
        {**base, "name": "tram.mp4"},
        {**base, "name": "../default/tram.mp4"},
        {**base, "name": "/default/tram.mp4"},
        {**base, "name": ".hidden/tram.mp4"},
    ]
    for i, data in enumerate(events):
        resp = requests.post(
            stack.info["ingest_url"],
            data=json.dumps(data),
            headers={**headers, "ce-id": f"org-{i}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
    # Ingest decides synchronously: a job an event made would exist before its 200.
    assert sorted(d.id for d in firestore_jobs(stack).stream()) == before  # no job for anyone else
    PROBES["events"] = len(events)


def test_sql_as_the_application_role_stays_in_its_org(stack: Stack) -> None:
    """The cloud stack's database, as the stages and functions use it: role heimdex_app, one
    organisation per transaction. Reads see nothing of another organisation; writes into one fail."""
    assert stack.db is not None
    with stack.db.org_tx("acme") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("heimdex_app",)
        assert conn.execute("SELECT count(*) FROM scenes WHERE org_id = 'default'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM assets WHERE org_id <> 'acme'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM scenes").fetchone()[0] > 0  # type: ignore[index]
        assert conn.execute("UPDATE scenes SET transcript = 'x' WHERE org_id = 'default'").rowcount == 0
        assert conn.execute("DELETE FROM assets WHERE org_id = 'default'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), stack.db.org_tx("acme") as conn:
        conn.execute(
            "INSERT INTO assets (org_id, asset_id, source, version, status)"
            " VALUES ('default', 'x', 'gs://x/default/x.mp4', '1', 'ready')"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), stack.db.org_tx("acme") as conn:
        conn.execute("UPDATE scenes SET org_id = 'default'")  # moving own rows out is refused too
    PROBES["sql"] = 7
    print(
        "cross-tenant probes refused:",
        json.dumps(PROBES),
        "total",
        sum(v for k, v in PROBES.items() if k != "derived_blobs_checked"),
    )
