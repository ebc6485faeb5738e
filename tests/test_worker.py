"""Stage endpoints in cloud mode refuse tasks without a valid Cloud Tasks OIDC token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from heimdex.cloud.service import create_stage_app
from heimdex.config import Settings
from heimdex.embedded.engine import Engine


class RecordingDispatcher:
    """Stands in for Cloud Tasks only to record what a stage would enqueue."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str]] = []

    def stage_url(self, stage: str) -> str:
        return f"https://heimdex-{stage}.example.run.app/"

    def enqueue(self, ref: object, stage: str) -> None:
        self.enqueued.append((getattr(ref, "job_id", ""), stage))


@pytest.fixture(scope="module")
def cloud_engine(home: Path, engine: Engine) -> Iterator[Engine]:
    eng = Engine(Settings(home=home, database_url=engine.db.url, verify_task_tokens=True))
    yield eng
    eng.close()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic x"}]
)
def test_task_without_valid_oidc_token_is_refused(cloud_engine: Engine, headers: dict[str, str]) -> None:
    dispatcher = RecordingDispatcher()
    app = create_stage_app("probe", cloud_engine, dispatcher).test_client()
    payload = {"org_id": "default", "asset_id": "a", "source": "/nope.mp4", "version": "1"}
    resp = app.post("/", json=payload, headers=headers)
    assert resp.status_code == 401
    assert dispatcher.enqueued == []


def test_malformed_task_is_dropped_not_retried(engine: Engine) -> None:
    app = create_stage_app("probe", engine, RecordingDispatcher()).test_client()
    resp = app.post("/", json={"org_id": "default"})
    assert resp.status_code == 400  # 4xx other than 429: Cloud Tasks does not retry forever on it


@pytest.mark.parametrize(
    ("stage", "part"), [("asr", "3"), ("asr", -1), ("asr", True), ("asr", 1.5), ("probe", 0), ("index", 2)]
)
def test_segment_task_with_a_bad_part_is_dropped(engine: Engine, stage: str, part: object) -> None:
    """`part` must be a segment number, and only of a segmented stage."""
    dispatcher = RecordingDispatcher()
    app = create_stage_app(stage, engine, dispatcher).test_client()
    payload = {"org_id": "default", "asset_id": "a", "source": "/nope.mp4", "version": "1", "part": part}
    resp = app.post("/", json=payload)
    assert resp.status_code == 400, resp.get_json()
    assert "part" in resp.get_json()["error"] or "task" in resp.get_json()["error"]
    assert dispatcher.enqueued == []


def test_task_that_reaches_no_job_of_its_org_is_ignored(engine: Engine) -> None:
    """A payload naming one organisation with another's asset id, or an asset without a job: 200
    `ignored` (Cloud Tasks stops), nothing run, nothing enqueued."""
    from heimdex.domain import make_asset_id

    dispatcher = RecordingDispatcher()
    app = create_stage_app("probe", engine, dispatcher).test_client()
    other = {"org_id": "intruder", "asset_id": make_asset_id("default", "/x.mp4", "1")}
    no_job = {"org_id": "intruder", "asset_id": make_asset_id("intruder", "/x.mp4", "1")}
    for payload in (other, no_job):
        resp = app.post("/", json={**payload, "source": "/x.mp4", "version": "1"})
        assert resp.status_code == 200 and resp.get_json()["status"] == "ignored", resp.get_json()
    assert dispatcher.enqueued == []
