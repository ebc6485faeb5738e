"""What the web app's Library page reads from the API (issue 16): a processing asset carries its
job's progress (tasks finished of the job's tasks, the running ones), a failed one its reason, and
an embedded upload names its asset while it is being indexed. Real job store, real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from heimdex.api.app import create_app
from heimdex.api.auth import issue_token
from heimdex.core import graph
from heimdex.dev.samples import Segment, make_clip
from heimdex.domain import AssetRef, make_asset_id
from heimdex.embedded.engine import Engine
from tests.conftest import JWT_SECRET
from tests.waiting import wait_for

ORG = "library-api"


@pytest.fixture(scope="module")
def client(engine: Engine) -> FlaskClient:
    return create_app(engine).test_client()


def listed(client: FlaskClient, source: str, org: str = ORG) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, org)}"}
    resp = client.get("/v1/assets", query_string={"source": source}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    assets: list[dict[str, Any]] = resp.get_json()["assets"]
    return assets


def test_progress_counts_every_task_of_the_graph() -> None:
    # One segment: one task per stage; none finished.
    assert graph.progress({graph.FIRST: {"status": "queued"}}) == (0, len(graph.PIPELINE), [])
    # Three segments planned by the first stage: segmented stages count three tasks each.
    stages = {
        graph.FIRST: {"status": "done", "parts": 3},
        "asr_0": {"status": "done"},
        "asr_1": {"status": "running"},
        "ocr_0": {"status": "skipped"},
        "shots_0": {"status": "failed"},
    }
    segmented = sum(1 for s in graph.PIPELINE if s.segmented)
    total = 3 * segmented + (len(graph.PIPELINE) - segmented)
    assert graph.progress(stages) == (3, total, ["asr_1"])


def test_a_processing_asset_shows_its_jobs_progress_and_a_failed_one_its_reason(
    engine: Engine, client: FlaskClient, tmp_path: Path
) -> None:
    source = str(tmp_path / "in-progress.mp4")
    ref = AssetRef(ORG, make_asset_id(ORG, source, "v1"), source, "v1")
    assert engine.jobs.create(ref)

    (queued,) = listed(client, source)
    assert queued["status"] == "processing" and queued["indexed_at"] is None
    assert queued["progress"] == {
        "job_id": ref.job_id,
        "done": 0,
        "total": len(graph.PIPELINE),
        "running": [],
    }

    engine.jobs.stage_started(ref, graph.FIRST)
    assert listed(client, source)[0]["progress"]["running"] == [graph.FIRST]
    engine.jobs.stage_finished(ref, graph.FIRST, status="done", seconds=0.1, parts=2)
    engine.jobs.stage_started(ref, "asr_0")
    progress = listed(client, source)[0]["progress"]
    segmented = sum(1 for s in graph.PIPELINE if s.segmented)
    assert progress["done"] == 1 and progress["running"] == ["asr_0"]
    assert progress["total"] == 2 * segmented + len(graph.PIPELINE) - segmented

    # The same on the asset's own page; another organisation sees nothing.
    auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, ORG)}"}
    detail = client.get(f"/v1/assets/{ref.asset_id}", headers=auth).get_json()
    assert detail["progress"] == progress
    assert listed(client, source, org="library-other") == []

    engine.jobs.job_failed(ref, "asr_0", "the audio track cannot be decoded")
    (failed,) = listed(client, source)
    assert failed["status"] == "failed" and failed["progress"] is None
    assert failed["error"] == "asr_0: the audio track cannot be decoded" and failed["indexed_at"]


def test_a_reindex_reads_processing_from_its_answer_on_until_it_is_ready(
    engine: Engine, client: FlaskClient, tmp_path: Path
) -> None:
    clip = tmp_path / "reindexed.mp4"
    make_clip([Segment(3.0, caption="QUINCE ORCHARD")], clip)
    (result,) = engine.index([clip], org=ORG)
    assert result.status == "ready", result
    (before,) = listed(client, str(clip))
    auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, ORG)}"}
    resp = client.post(f"/v1/assets/{before['asset_id']}/reindex", headers=auth)
    assert resp.status_code == 202
    # No poll can see the old state: the job restarted before the answer.
    (running,) = listed(client, str(clip))
    assert running["status"] in ("processing", "ready") and running["indexed_at"] != before["indexed_at"]
    if running["status"] == "processing":
        assert running["progress"]["total"] >= len(graph.PIPELINE)

    def ready() -> dict[str, Any] | None:
        (now,) = listed(client, str(clip))
        return now if now["status"] == "ready" and now["indexed_at"] > before["indexed_at"] else None

    done = wait_for(ready, timeout=600, what="the re-index to finish")
    assert done["progress"] is None and done["scenes"] >= 1


def test_the_pages_may_send_uploads_to_signed_bucket_urls_only_in_the_cloud(tmp_path: Path) -> None:
    from heimdex.api.web import content_security_policy
    from heimdex.config import Settings

    def connect(**kw: Any) -> str:
        policy = content_security_policy(Settings(home=tmp_path, jwt_secret=JWT_SECRET, **kw))
        (found,) = [d for d in policy.split("; ") if d.startswith("connect-src ")]
        return found

    assert connect() == "connect-src 'self'"
    assert connect(upload_bucket="uploads") == "connect-src 'self' https://storage.googleapis.com"
    assert "https://storage.googleapis.com" in connect(source_buckets=["gs://media"])
