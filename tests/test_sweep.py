"""Stuck jobs are swept (docs/RELIABILITY.md, "Stuck jobs"): a job whose task shows no progress for
longer than its stage's deadline times its attempts ends `failed` with `stalled in <task>`.

- the rule itself (`heimdex.core.sweep.find_stall`) with a fixed `now`;
- the PostgreSQL store (the session's embedded server), including a completion that holds the row
  lock while the sweep waits for it, and the start-up sweep of `heimdex index` / `heimdex serve`;
- the `/sweep` endpoint refuses calls without Cloud Scheduler's OIDC token;
- on the emulator stack (one for this module): the Firestore store, and end to end a stage service
  that accepts the task and never answers, until the scheduled `/sweep` fails the job.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import requests

from heimdex import cli
from heimdex.adapters.pg_jobs import PgJobStore
from heimdex.cloud.drive_watch import create_drive_app
from heimdex.config import STAGE_DEADLINES_S, Settings
from heimdex.core.graph import record_completion
from heimdex.core.sweep import Stall, find_stall
from heimdex.dev.samples import Segment
from heimdex.dev.stack import Stack
from heimdex.domain import AssetRef, make_asset_id
from heimdex.embedded.dispatch import JobResult, LocalDispatcher
from heimdex.embedded.engine import Engine
from heimdex.vectorstore import store as index_store
from heimdex.vectorstore.db import Database
from tests import waiting
from tests.conftest import JWT_SECRET, make_clips

TIMEOUT_S = float(os.environ.get("HEIMDEX_FAULT_TIMEOUT_S", "600"))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEADLINES = {"probe": 60.0, "asr": 600.0, "shots": 300.0, "ocr": 300.0, "vision": 300.0, "index": 120.0}
DAY = 86400.0
# For the session's shared database: only jobs backdated by days are stalled under these, never a
# job another test of this session left running.
DAY_DEADLINES = dict.fromkeys(STAGE_DEADLINES_S, DAY)


def ago(seconds: float, now: datetime = NOW) -> datetime:
    return now - timedelta(seconds=seconds)


def job(stages: dict[str, Any], *, updated: float = 0.0, status: str = "running") -> dict[str, Any]:
    return {
        "job_id": "job-x",
        "org_id": "o",
        "source": "/a.mp4",
        "status": status,
        "stages": stages,
        "updated_at": ago(updated),
    }


wait_for = partial(waiting.wait_for, timeout=TIMEOUT_S)

# --- the rule ------------------------------------------------------------------------------------


def test_a_running_task_past_its_deadline_stalls_its_job() -> None:
    stall = find_stall(
        job({"probe": {"status": "running", "attempts": 1, "started": ago(61)}}), NOW, DEADLINES
    )
    assert stall == Stall("job-x", "o", "/a.mp4", "probe", 61.0, 1)
    assert stall.reason == "stalled in probe: no progress for 61 s after 1 attempt(s)"
    fresh = job({"probe": {"status": "running", "attempts": 1, "started": ago(59)}})
    assert find_stall(fresh, NOW, DEADLINES) is None


def test_attempts_multiply_the_deadline() -> None:
    retried = {"probe": {"status": "running", "attempts": 2, "started": ago(100)}}
    assert find_stall(job(retried), NOW, DEADLINES) is None  # 100 s < 2 x 60 s
    retried["probe"]["started"] = ago(121)
    stall = find_stall(job(retried), NOW, DEADLINES)
    assert stall is not None and stall.reason == "stalled in probe: no progress for 121 s after 2 attempt(s)"


def test_a_running_task_is_timed_from_its_own_start_not_its_jobs_last_change() -> None:
    """A sibling's progress moves the job's `updated_at`; it does not hide a hung task."""
    stages = {
        "probe": {"status": "done"},
        "asr": {"status": "running", "attempts": 1, "started": ago(700)},
        "shots": {"status": "running", "attempts": 1, "started": ago(10)},
    }
    stall = find_stall(job(stages, updated=5), NOW, DEADLINES)
    assert stall is not None and (stall.key, stall.idle_s) == ("asr", 700.0)


def test_a_queued_task_is_timed_from_its_jobs_last_change() -> None:
    stages = {"probe": {"status": "done"}, "asr": {"status": "queued"}, "shots": {"status": "done"}}
    assert find_stall(job(stages, updated=599), NOW, DEADLINES) is None
    stall = find_stall(job(stages, updated=601), NOW, DEADLINES)
    assert stall is not None
    assert stall.reason == "stalled in asr: no progress for 601 s after 0 attempt(s)"


def test_segment_tasks_use_their_stage_deadline_and_the_first_in_pipeline_order_is_named() -> None:
    stages = {
        "probe": {"status": "done", "parts": 4},
        "ocr_1": {"status": "running", "attempts": 1, "started": ago(301)},  # ocr: 300 s
        "asr_3": {"status": "running", "attempts": 1, "started": ago(601)},  # asr: 600 s
        "asr_2": {"status": "running", "attempts": 1, "started": ago(599)},
    }
    stall = find_stall(job(stages), NOW, DEADLINES)
    assert stall is not None and stall.key == "asr_3"
    del stages["asr_3"]
    stall = find_stall(job(stages), NOW, DEADLINES)
    assert stall is not None and stall.key == "ocr_1"


@pytest.mark.parametrize("status", ["ready", "failed"])
def test_finished_jobs_and_tasks_are_never_stalled(status: str) -> None:
    old = {"probe": {"status": "running", "attempts": 1, "started": ago(10 * DAY)}}
    assert find_stall(job(old, updated=10 * DAY, status=status), NOW, DEADLINES) is None
    done = {"probe": {"status": "done", "started": ago(DAY)}, "asr": {"status": "failed"}}
    assert find_stall(job(done, updated=DAY), NOW, DEADLINES) is None
    assert find_stall(None, NOW, DEADLINES) is None


def test_stored_times_in_every_form() -> None:
    """ISO text (the PostgreSQL stage map), naive and aware datetimes (Firestore, timestamptz)."""
    for started in (ago(61).isoformat(timespec="milliseconds"), ago(61).replace(tzinfo=None), ago(61)):
        stall = find_stall(
            job({"probe": {"status": "running", "attempts": 1, "started": started}}), NOW, DEADLINES
        )
        assert stall is not None and stall.idle_s == 61.0, started


def test_a_stage_without_a_deadline_is_never_swept() -> None:
    stages = {"probe": {"status": "running", "attempts": 1, "started": ago(10 * DAY)}}
    assert find_stall(job(stages), NOW, {**DEADLINES, "probe": 0}) is None
    assert find_stall(job(stages), NOW, {"asr": 1.0}) is None


def test_deadline_setting_overrides_single_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEIMDEX_STAGE_DEADLINES_S", '{"asr": 5}')
    assert Settings().stage_deadlines() == {**STAGE_DEADLINES_S, "asr": 5.0}
    assert STAGE_DEADLINES_S["asr"] > STAGE_DEADLINES_S["probe"]


# --- PostgreSQL (embedded) -------------------------------------------------------------------------


def new_org() -> str:
    return f"sweep-{uuid.uuid4().hex[:10]}"


def new_job(store: PgJobStore | Any, org: str, name: str) -> AssetRef:
    source = f"/sweep/{name}.mp4"
    ref = AssetRef(org, make_asset_id(org, source, "1"), source, "1")
    assert store.create(ref)
    return ref


def set_pg_state(db: Database, ref: AssetRef, stages: dict[str, Any], updated_at: datetime) -> None:
    with db.org_tx(ref.org_id) as conn:
        conn.execute(
            "UPDATE jobs SET stages = %s, updated_at = %s WHERE job_id = %s",
            (json.dumps(stages), updated_at, ref.job_id),
        )


def running_since(started: datetime, attempts: int = 1) -> dict[str, Any]:
    return {"probe": {"status": "running", "attempts": attempts, "started": started.isoformat()}}


def asset_row(db: Database, ref: AssetRef) -> dict[str, Any]:
    with db.org_tx(ref.org_id) as conn:
        row = index_store.get_asset(conn, ref.asset_id)
    assert row is not None
    return row


def test_pg_sweep_fails_only_stalled_jobs(engine: Engine) -> None:
    store, org, now = PgJobStore(engine.db), new_org(), datetime.now(UTC)
    stalled, fresh, retried = (new_job(store, org, n) for n in ("stalled", "fresh", "retried"))
    set_pg_state(engine.db, stalled, running_since(ago(3 * DAY, now)), ago(3 * DAY, now))
    set_pg_state(engine.db, fresh, running_since(ago(DAY / 2, now)), ago(DAY / 2, now))
    set_pg_state(engine.db, retried, running_since(ago(1.5 * DAY, now), attempts=2), ago(1.5 * DAY, now))

    swept = [s for s in store.sweep(now, DAY_DEADLINES) if s.org_id == org]

    assert [s.job_id for s in swept] == [stalled.job_id]
    failed = store.get(stalled)
    assert failed is not None and failed["status"] == "failed"
    reason = "stalled in probe: no progress for 259200 s after 1 attempt(s)"
    assert failed["error"] == f"probe: {reason}"
    assert failed["stages"]["probe"]["status"] == "failed"
    row = asset_row(engine.db, stalled)
    assert (row["status"], row["error"]) == ("failed", f"probe: {reason}")
    for ref in (fresh, retried):
        still = store.get(ref)
        assert still is not None and still["status"] == "running"
        assert asset_row(engine.db, ref)["status"] == "processing"
    assert [s for s in store.sweep(now, DAY_DEADLINES) if s.org_id == org] == []  # nothing twice


def test_pg_sweep_yields_to_a_completion_that_holds_the_row_lock(engine: Engine) -> None:
    """The sweep lists the job as stalled, then waits for the row a completing stage has locked; the
    completion commits first, and the sweep, judging again under the lock, leaves the job running."""
    store, org, now = PgJobStore(engine.db), new_org(), datetime.now(UTC)
    ref = new_job(store, org, "raced")
    set_pg_state(engine.db, ref, running_since(ago(3 * DAY, now)), ago(3 * DAY, now))
    swept: list[Stall] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            swept.extend(s for s in store.sweep(now, DAY_DEADLINES) if s.org_id == org)
        except BaseException as exc:
            errors.append(exc)

    with engine.db.org_tx(org) as conn, psycopg.connect(engine.db.url, autocommit=True) as watch:
        stages = conn.execute(
            "SELECT stages FROM jobs WHERE job_id = %s FOR UPDATE", (ref.job_id,)
        ).fetchone()
        assert stages is not None
        holder = conn.info.backend_pid
        sweeper = threading.Thread(target=sweep, name="sweeper")
        sweeper.start()

        def blocked() -> bool:
            row = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (holder,)
            ).fetchone()
            return bool(row and row[0])

        wait_for(blocked, "the sweep to wait for the job's row lock")
        # What stage_finished does in its transaction: record probe, queue what it unlocks.
        state = stages[0]
        assert record_completion(state, "probe", status="done", seconds=1.0, note=None, at="now") == [
            "asr",
            "shots",
        ]
        conn.execute(
            "UPDATE jobs SET stages = %s, updated_at = now() WHERE job_id = %s",
            (json.dumps(state), ref.job_id),
        )
    sweeper.join(TIMEOUT_S)
    assert not sweeper.is_alive() and not errors, errors
    assert swept == []
    after = store.get(ref)
    assert after is not None and after["status"] == "running"
    assert after["stages"]["probe"]["status"] == "done"


@pytest.mark.parametrize("command", ["index", "serve"])
def test_cli_start_up_sweeps_and_prints_a_line_per_job(
    command: str,
    engine: Engine,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`heimdex index` and `heimdex serve` sweep first (with the default deadlines) and say so."""
    store, org, now = PgJobStore(engine.db), new_org(), datetime.now(UTC)
    ref = new_job(store, org, f"left-by-a-killed-run-{command}")
    set_pg_state(engine.db, ref, running_since(ago(3 * DAY, now)), ago(3 * DAY, now))
    for name in [k for k in os.environ if k.startswith("HEIMDEX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HEIMDEX_HOME", str(home))
    monkeypatch.setenv("HEIMDEX_DATABASE_URL", engine.db.url)
    monkeypatch.setenv("HEIMDEX_JWT_SECRET", JWT_SECRET)
    # Only the start-up is under test: no indexing, no server.
    monkeypatch.setattr(Engine, "index", lambda self, *a, **k: [])
    import waitress

    monkeypatch.setattr(waitress, "serve", lambda *a, **k: None)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    args = cli.build_parser().parse_args(["index", str(clip)] if command == "index" else ["serve"])

    assert args.func(args) == cli.EXIT_OK

    lines = [line for line in capsys.readouterr().err.splitlines() if ref.job_id in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"swept {ref.job_id} ({ref.source}): stalled in probe: no progress for ")
    failed = store.get(ref)
    assert failed is not None and failed["status"] == "failed"


def test_a_dispatcher_reports_a_job_swept_elsewhere_instead_of_waiting_for_it(engine: Engine) -> None:
    """The in-process dispatcher of one `heimdex index` holds a task of a job that another process
    swept: the delivery finds the job failed, and the run reports it rather than wait forever."""
    store, org = PgJobStore(engine.db), new_org()
    ref = new_job(store, org, "swept-elsewhere")
    dispatcher = LocalDispatcher(engine.context, store, workers=1, max_attempts=1)
    try:
        result = dispatcher.results[ref.job_id] = JobResult(ref)
        store.job_failed(ref, "probe", "stalled in probe: no progress for 999 s after 1 attempt(s)")
        dispatcher._enqueue(ref, "probe")  # a task of the job still queued in this process
        assert result.finished.wait(TIMEOUT_S), "the dispatcher waits for a job that has ended"
    finally:
        dispatcher.shutdown()
    assert (result.status, result.error) == (
        "failed",
        "probe: stalled in probe: no progress for 999 s after 1 attempt(s)",
    )


# --- the /sweep endpoint ---------------------------------------------------------------------------


def test_sweep_endpoint_needs_the_schedulers_oidc_token(tmp_path: Path) -> None:
    calls: list[int] = []

    def app_with(verify: bool) -> Any:
        settings = Settings(
            home=tmp_path,
            jwt_secret=JWT_SECRET,
            verify_task_tokens=verify,
            drive_webhook_url="https://fn.example.net/heimdex-drive-watch/notifications",
        )
        engine = SimpleNamespace(settings=settings, sweep=lambda: calls.append(1) or [])
        return create_drive_app(engine, None, None).test_client()  # type: ignore[arg-type]

    app = app_with(verify=True)
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic x"}):
        resp = app.post("/sweep", headers=headers)
        assert resp.status_code == 401, (headers, resp.get_json())
        assert "OIDC token refused" in resp.get_json()["error"]
    assert calls == []
    resp = app_with(verify=False).post("/sweep")  # as on the emulator stack, which sends no tokens
    assert (resp.status_code, resp.get_json(), calls) == (200, {"swept": []}, [1])


# --- on the emulator stack -------------------------------------------------------------------------

ASR_DEADLINE_S = 3


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request as sent (headers and body may come in several segments)."""
    conn.settimeout(10)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
            if sep and len(body) >= (int(length.group(1)) if length else 0):
                break
    except OSError:
        pass
    return data


class SilentService:
    """Accepts HTTP connections, reads the request and never answers: a stage instance hung mid-task."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-service", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            self.requests.append(read_request(conn))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentService]:
    service = SilentService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, silent: SilentService) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("sweep-stack"),
        stage_urls={"asr": silent.url},
        extra_env={"HEIMDEX_STAGE_DEADLINES_S": json.dumps({"asr": ASR_DEADLINE_S})},
    )
    s.start()
    yield s
    silent.close()  # first, so that the emulator's request to it ends
    s.stop()


def firestore_client(stack: Stack) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=stack.project)


@pytest.mark.slow
def test_firestore_sweep_fails_only_stalled_jobs_and_yields_to_a_completion(stack: Stack) -> None:
    from heimdex.adapters.firestore_jobs import FirestoreJobStore

    assert stack.db is not None
    client = firestore_client(stack)
    store = FirestoreJobStore(client, "sweep_test_jobs", stack.db, ttl_days=1)
    org, now = "sweeptest", datetime.now(UTC)
    stalled, fresh, raced = (new_job(store, org, n) for n in ("stalled", "fresh", "raced"))
    for ref in (stalled, fresh, raced):
        store.stage_started(ref, "probe")
    for ref in (stalled, raced):
        client.collection("sweep_test_jobs").document(ref.job_id).update(
            {"stages.probe.started": ago(7200, now), "updated_at": ago(7200, now)}
        )
    # `raced` completes after it was seen stalled and before it is failed: judged again, it is not.
    assert find_stall(store.get(raced), now, DEADLINES) is not None
    store.stage_finished(raced, "probe", status="done", seconds=1.0)
    assert store.sweep_job(raced.job_id, now, DEADLINES) is None

    swept = store.sweep(now, DEADLINES)

    assert [s.job_id for s in swept] == [stalled.job_id]
    failed = store.get(stalled)
    assert failed is not None and failed["status"] == "failed"
    reason = "stalled in probe: no progress for 7200 s after 1 attempt(s)"
    assert failed["error"] == f"probe: {reason}"
    assert failed["stages"]["probe"]["status"] == "failed" and failed["expire_at"] is not None
    assert asset_row(stack.db, stalled)["error"] == f"probe: {reason}"
    for ref in (fresh, raced):
        still = store.get(ref)
        assert still is not None and still["status"] == "running"
    assert store.sweep(now, DEADLINES) == []


@pytest.mark.slow
def test_a_stage_that_never_answers_is_swept_by_the_scheduled_endpoint(
    stack: Stack, silent: SilentService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`asr` points at a service that accepts the task and never answers (so its queue never
    retries it). The other stages run; the scheduler's POST /sweep, repeated as Cloud Scheduler
    would, fails the job once `asr` has been idle for its deadline (3 s here, by
    HEIMDEX_STAGE_DEADLINES_S)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]
    from google.cloud.firestore_v1.base_query import FieldFilter

    clip = make_clips(
        tmp_path_factory.mktemp("sweep-media"),
        {"hung": [Segment(6.0, speech="The night ferry waited at the pier for a signal that never came.")]},
    )["hung"]
    name = "default/sweep/hung.mp4"
    bucket = storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)
    bucket.blob(name).upload_from_filename(str(clip), content_type="video/mp4")
    source = f"gs://{stack.bucket}/{name}"
    jobs = firestore_client(stack).collection("heimdex_jobs")

    def the_job() -> dict[str, Any] | None:
        docs = jobs.where(filter=FieldFilter("source", "==", source)).stream()
        found = [{"job_id": d.id, **(d.to_dict() or {})} for d in docs]
        assert len(found) <= 1, found
        return found[0] if found else None

    wait_for(
        lambda: any(source.encode() in r for r in silent.requests), "the asr task to reach the silent service"
    )
    job_id = wait_for(the_job, "the job")["job_id"]
    swept: list[dict[str, Any]] = []

    def sweep_once() -> dict[str, Any] | None:
        resp = requests.post(f"{stack.info['drive_watch_url']}/sweep", timeout=60)
        assert resp.status_code == 200, resp.text
        swept.extend(resp.json()["swept"])
        job = the_job()
        return job if job and job["status"] != "running" else None

    job = wait_for(sweep_once, "the sweep to end the job", every=1.0)

    assert job["status"] == "failed"
    assert job["error"].startswith("asr: stalled in asr: no progress for "), job["error"]
    assert job["error"].endswith(" s after 0 attempt(s)"), job["error"]
    assert job["stages"]["asr"]["status"] == "failed"
    assert job["stages"]["probe"]["status"] == "done"
    assert [(s["job_id"], s["task"]) for s in swept] == [(job_id, "asr")]
    assert stack.db is not None
    with stack.db.org_tx("default") as conn:
        row = index_store.find_assets(conn, source)[0]
    assert (row["status"], row["error"]) == ("failed", job["error"])
    resp = requests.post(f"{stack.info['drive_watch_url']}/sweep", timeout=60)
    assert resp.json() == {"swept": []}  # swept once
