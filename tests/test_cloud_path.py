"""The cloud path end to end on local emulators: the same stack `heimdex dev` runs.

fake-gcs-server -> Pub/Sub emulator -> eventarc bridge -> ingest function -> Cloud Tasks emulator ->
one process per stage -> Firestore emulator (jobs) + PostgreSQL/pgvector -> search function. Every
stage's first attempt at `shots` fails (fault injection), so each job also proves the retry path.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from heimdex.adapters.drive_auth import new_key
from heimdex.api.auth import issue_token
from heimdex.dev.samples import Segment
from heimdex.dev.stack import DEV_SECRET, Stack
from tests import waiting
from tests.conftest import make_clips
from tests.fakes.drive_server import FakeClient, FakeDrive

pytestmark = pytest.mark.slow

CLIPS = {
    "ferry": [
        Segment(6.0, speech="The ferry to the island leaves every hour from the north pier."),
        Segment(5.0, caption="TIMETABLE CHANGES"),
    ],
    "orchard": [
        Segment(6.0, speech="Apple pickers worked through the orchard before the first frost."),
        Segment(5.0, caption="HARVEST FESTIVAL"),
    ],
    "observatory": [
        Segment(6.0, speech="Astronomers at the observatory photographed a bright comet."),
        Segment(5.0, caption="NIGHT SKY"),
    ],
    "glacier": [
        Segment(6.0, speech="The expedition crossed the glacier on skis with heavy sledges."),
        Segment(5.0, caption="POLAR EXPEDITION"),
    ],
    "lighthouse": [
        Segment(6.0, speech="Engineers restored the copper dome of the old lighthouse."),
        Segment(5.0, caption="COASTAL HERITAGE"),
    ],
    "vineyard": [
        Segment(6.0, speech="Grape harvesters filled wooden crates on the steep vineyard slopes."),
        Segment(5.0, caption="WINE COUNTRY"),
    ],
}
TIMEOUT_S = 600  # generous: a wait ends when its condition holds; this only bounds a failure


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("cloud-media"), CLIPS)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def drive_client(drive: FakeDrive) -> FakeClient:
    return drive.register_client()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, moto: str, drive: FakeDrive, drive_client: FakeClient
) -> Iterator[dict[str, Any]]:
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(aws)
    drive_env = {f"HEIMDEX_{k.upper()}": str(v) for k, v in drive.settings(drive_client).items()}
    s = Stack(
        tmp_path_factory.mktemp("stack"),
        extra_env={
            **aws,
            "HEIMDEX_S3_ENDPOINT_URL": moto,
            **drive_env,  # the fake's Drive API and OAuth endpoints, and a client registered there
            "HEIMDEX_DRIVE_TOKEN_KEY": new_key(),
            "HEIMDEX_FAIL_FIRST_ATTEMPTS": json.dumps({"shots": 1}),
            # 11-s clips run in two segments: every segmented stage is two tasks through the queues.
            "HEIMDEX_SEGMENT_S": "5",
        },
    )
    info = s.start()
    info["_stack"] = s
    drive.allow_redirect(drive_client.id, f"{info['drive_watch_url']}/v1/drive/callback")
    yield info
    s.stop()


def api(info: dict[str, Any], path: str, token: str | None = None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or info['token']}"}
    return requests.get(f"{info['api_url']}{path}", params=params, headers=headers, timeout=30)


def bucket(info: dict[str, Any], key: str = "bucket") -> Any:
    """The stack's source bucket, or with key="derived_bucket" its derived one."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = info["storage_emulator_host"]
    client = storage.Client(project=info["project"], credentials=AnonymousCredentials())
    return client.bucket(info[key])


wait_for = partial(waiting.wait_for, timeout=TIMEOUT_S)


def top_hit(info: dict[str, Any], query: str, source: str) -> dict[str, Any] | None:
    results = api(info, "/v1/search", q=query, k=3).json()["results"]
    return results[0] if results and results[0]["source"] == source else None


def assets_for(info: dict[str, Any], source: str) -> list[dict[str, Any]]:
    return [a for a in api(info, "/v1/assets").json()["assets"] if a["source"] == source]


def jobs(info: dict[str, Any]) -> list[dict[str, Any]]:
    from google.cloud import firestore

    os.environ["FIRESTORE_EMULATOR_HOST"] = info["firestore_emulator_host"]
    client = firestore.Client(project=info["project"])
    return [{"job_id": d.id, **d.to_dict()} for d in client.collection("heimdex_jobs").stream()]


def test_bucket_upload_becomes_searchable_through_the_api(
    stack: dict[str, Any], clips: dict[str, Path]
) -> None:
    source = f"gs://{stack['bucket']}/default/news/ferry.mp4"
    started = time.monotonic()
    bucket(stack).blob("default/news/ferry.mp4").upload_from_filename(
        str(clips["ferry"]), content_type="video/mp4"
    )
    hit = wait_for(lambda: top_hit(stack, "ferry to the island", source), "the upload to be searchable")
    took = time.monotonic() - started
    assert hit["start"] <= 1.0 and hit["end"] >= 5.0, hit
    assert hit["thumbnail"].startswith(stack["storage_emulator_host"])
    print(f"time to searchable: {took:.1f}s")

    (job,) = [j for j in jobs(stack) if j["source"] == source]
    assert job["status"] == "ready"
    # Each segment's shots task failed once (injected) and was retried: at least two attempts (a
    # delivery the emulator repeats may add one; the promise is the retry, not the count).
    assert all(job["stages"][f"shots_{i}"]["attempts"] >= 2 for i in range(2)), job["stages"]
    # Each task's output was written to its one deterministic path, and nothing else was.
    derived = bucket(stack, "derived_bucket")
    asset_id = job["asset_id"]
    prefix = f"derived/default/{asset_id}/"
    written = {b.name for b in derived.list_blobs(prefix=prefix) if "/thumbs/" not in b.name}
    outputs = {name for name in written if "/textframes/" not in name}
    # (index writes the sidecar, checked below, rather than a stage output)
    expected = {f"derived/default/{asset_id}/{key}.json" for key in job["stages"] if key != "index"}
    assert outputs == expected, outputs
    # The frames the shots tasks picked for OCR: exactly those their outputs name. (The frames they
    # handed the faces tasks, faceframes/, are gone: each faces task removes its own once used.)
    named = {
        frame["image"]
        for key in job["stages"]
        if key.startswith("shots")
        for frame in json.loads(derived.blob(f"{prefix}{key}.json").download_as_bytes())["text_frames"]
        if frame.get("image")
    }
    assert written - outputs == named, (written - outputs, named)
    # Indexed once: one asset row, and as many scene rows as the sidecar has scenes.
    (asset,) = assets_for(stack, source)
    sidecar = json.loads(derived.blob(f"derived/default/sidecars/{asset_id}.json").download_as_bytes())
    with stack["_stack"].db.org_tx("default") as conn:
        (rows,) = conn.execute("SELECT count(*) FROM scenes WHERE asset_id = %s", (asset_id,)).fetchone()
    assert asset["status"] == "ready" and rows == asset["scenes"] == len(sidecar["scenes"]), asset
    assert job["expire_at"] is not None  # TTL field on finished jobs
    status = api(stack, f"/v1/jobs/{job['job_id']}").json()
    segmented = {f"{stage}_{i}" for stage in ("asr", "shots", "ocr", "vision", "faces") for i in range(2)}
    assert status["status"] == "ready" and set(status["stages"]) == {"probe", "index"} | segmented


def test_job_status_is_scoped_to_the_org(stack: dict[str, Any]) -> None:
    from heimdex.api.auth import issue_token
    from heimdex.dev.stack import DEV_SECRET

    job_id = jobs(stack)[0]["job_id"]
    other = issue_token(os.environ.get("HEIMDEX_JWT_SECRET", DEV_SECRET), "someone-else")
    assert api(stack, f"/v1/jobs/{job_id}", token=other).status_code == 404
    assert api(stack, "/v1/search", token=other, q="ferry").json() == {"results": []}
    assert api(stack, f"/v1/jobs/{job_id}", token="forged").status_code == 401


def test_redelivered_events_make_one_job_and_one_set_of_scenes(
    stack: dict[str, Any], clips: dict[str, Path]
) -> None:
    name = "default/orchard.mp4"
    source = f"gs://{stack['bucket']}/{name}"
    blob = bucket(stack).blob(name)
    blob.upload_from_filename(str(clips["orchard"]), content_type="video/mp4")
    blob.reload()
    data = {
        "bucket": stack["bucket"],
        "name": name,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": "video/mp4",
    }
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{stack['bucket']}",
        "Content-Type": "application/json",
    }
    for event_id in ("replay-1", "replay-1", "replay-1", "replay-2"):  # the same event thrice, then a twin
        resp = requests.post(
            stack["ingest_url"], data=json.dumps(data), headers={**headers, "ce-id": event_id}, timeout=30
        )
        assert resp.status_code == 200
    wait_for(lambda: top_hit(stack, "apple pickers in the orchard", source), "the orchard clip")
    assert len([j for j in jobs(stack) if j["source"] == source]) == 1
    (asset,) = assets_for(stack, source)
    results = api(stack, "/v1/search", q="apple pickers orchard harvest festival", k=20).json()["results"]
    mine = [(r["start"], r["end"]) for r in results if r["source"] == source]
    assert len(mine) == len(set(mine)) == asset["scenes"]


def test_hostile_requests_get_json_4xx_or_an_acknowledgement(stack: dict[str, Any]) -> None:
    """The review's probes against the real function processes: events that can never be handled
    are acknowledged (200 `rejected`, so Eventarc stops), bad parameters are JSON 400s, no 5xx."""
    before = {j["job_id"] for j in jobs(stack)}
    base = {"bucket": stack["bucket"], "name": "default/x.mp4", "generation": "1", "size": "10"}
    events = [
        ("deleted", {**base, "name": "My Videos/clip.mp4"}, "invalid_org"),
        ("deleted", {**base, "name": "bétä/clip.mp4"}, "invalid_org"),
        ("finalized", {**base, "bucket": "someone-elses-bucket"}, "unknown_bucket"),
        ("finalized", {k: v for k, v in base.items() if k != "generation"}, "invalid_event"),
        ("finalized", {**base, "size": "1.5"}, "invalid_event"),
        ("finalized", [1, 2], "invalid_event"),
    ]
    for i, (kind, data, code) in enumerate(events):
        headers = {
            "ce-specversion": "1.0",
            "ce-type": f"google.cloud.storage.object.v1.{kind}",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{stack['bucket']}",
            "ce-id": f"hostile-{i}",
            "Content-Type": "application/json",
        }
        resp = requests.post(stack["ingest_url"], data=json.dumps(data), headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "rejected" and resp.json()["code"] == code, resp.text
    assert {j["job_id"] for j in jobs(stack)} == before

    token = {"Authorization": f"Bearer {stack['token']}"}
    for url, method in (
        (f"{stack['api_url']}/v1/jobs/job-%00", "GET"),
        (f"{stack['api_url']}/v1/search?q=ok&k=1_0", "GET"),
        (f"{stack['drive_watch_url']}/v1/watches/bad%20id", "DELETE"),
        (f"{stack['drive_watch_url']}/v1/watches/{'x' * 300}", "DELETE"),
    ):
        resp = requests.request(method, url, headers=token, timeout=30)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_parameter", (url, resp.text)
    assert requests.get(stack["ingest_url"], timeout=30).json()["code"] == "method_not_allowed"


def test_overwrite_replaces_and_delete_removes(stack: dict[str, Any], clips: dict[str, Path]) -> None:
    name = "default/reel.mp4"
    source = f"gs://{stack['bucket']}/{name}"
    blob = bucket(stack).blob(name)
    blob.upload_from_filename(str(clips["observatory"]), content_type="video/mp4")
    wait_for(lambda: top_hit(stack, "astronomers photographed a comet", source), "the first version")

    blob.upload_from_filename(str(clips["glacier"]), content_type="video/mp4")  # a new generation
    wait_for(lambda: top_hit(stack, "expedition crossed the glacier on skis", source), "the second version")
    wait_for(lambda: len(assets_for(stack, source)) == 1, "the old version to go")
    old = api(stack, "/v1/search", q="astronomers photographed a comet", k=5).json()["results"]
    assert all("comet" not in r["text"].lower() for r in old if r["source"] == source)

    blob.delete()
    wait_for(lambda: not assets_for(stack, source), "the deleted object to leave the index")
    gone = api(stack, "/v1/search", q="expedition crossed the glacier", k=5).json()["results"]
    assert all(r["source"] != source for r in gone)


def test_a_poison_object_fails_with_a_reason_and_others_go_on(
    stack: dict[str, Any], clips: dict[str, Path]
) -> None:
    bucket(stack).blob("default/broken.mp4").upload_from_string(
        b"\x00not a video" * 1000, content_type="video/mp4"
    )
    source = f"gs://{stack['bucket']}/default/broken.mp4"
    (asset,) = wait_for(
        lambda: [a for a in assets_for(stack, source) if a["status"] == "failed"], "the failure"
    )
    assert "probe: not a readable media file" in asset["error"]
    (job,) = [j for j in jobs(stack) if j["source"] == source]
    assert job["status"] == "failed" and job["stages"]["probe"]["attempts"] == 1  # bad input: no retries
    assert top_hit(stack, "ferry to the island", f"gs://{stack['bucket']}/default/news/ferry.mp4")


def test_s3_source_through_moto(stack: dict[str, Any], clips: dict[str, Path], moto: str) -> None:
    import boto3

    from heimdex.adapters.cloud_tasks import CloudTasksDispatcher
    from heimdex.cloud.ingest import ingest
    from heimdex.config import Settings
    from heimdex.embedded.engine import Engine

    s3 = boto3.client("s3", endpoint_url=moto)
    s3.create_bucket(Bucket="archive")
    s3.upload_file(str(clips["lighthouse"]), "archive", "reels/lighthouse.mp4")
    head = s3.head_object(Bucket="archive", Key="reels/lighthouse.mp4")
    settings = Settings(
        home=Path(stack["logs"]).parent / "home",
        database_url=stack["database_url"],
        project=stack["project"],
        job_store="firestore",
        dispatch="cloud_tasks",
        tasks_emulator_host=stack["tasks_emulator_host"],
        stage_urls=stack["stage_urls"],
        derived_bucket=stack["derived_bucket"],
        s3_endpoint_url=moto,
    )
    os.environ["FIRESTORE_EMULATOR_HOST"] = stack["firestore_emulator_host"]
    engine = Engine(settings)
    try:
        result = ingest(
            engine,
            CloudTasksDispatcher(settings),
            org_id="default",
            source="s3://archive/reels/lighthouse.mp4",
            version=head["ETag"].strip('"'),
            size=head["ContentLength"],
            name="lighthouse.mp4",
            content_type="video/mp4",
        )
        assert result.status == "queued"
    finally:
        engine.close()
    hit = wait_for(
        lambda: top_hit(stack, "copper dome of the lighthouse", "s3://archive/reels/lighthouse.mp4"),
        "the S3 object",
    )
    assert hit["link"] == f"{hit['media_url']}#t=0.0"
    # The media URL (no credentials) redirects to a presigned S3 URL: moto serves the bytes.
    media = requests.get(hit["media_url"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert media.history[0].status_code == 302 and "Signature=" in media.url
    assert media.status_code == 206 and media.content == clips["lighthouse"].read_bytes()[:100]


def test_upload_play_caption_export_and_delete_through_the_api(
    stack: dict[str, Any], clips: dict[str, Path]
) -> None:
    """Issue 14 on the cloud path: a V4 signed upload into the source bucket (the bucket trigger
    indexes it), the hit's thumbnail and media opened without credentials (media: a redirect to a V4
    signed URL on fake-gcs-server, which serves ranges), captions, an EDL, and delete."""
    import io

    import pycmx

    from heimdex.adapters.cloud_tasks import CloudTasksDispatcher
    from heimdex.cloud.ingest import ingest
    from heimdex.config import Settings
    from heimdex.services import Services

    auth = {"Authorization": f"Bearer {stack['token']}", "Idempotency-Key": "vineyard-1"}
    data = clips["vineyard"].read_bytes()
    body = {"filename": "vine yard.mp4", "size": len(data), "content_type": "video/mp4"}
    made = requests.post(f"{stack['api_url']}/v1/uploads", json=body, headers=auth, timeout=30)
    assert made.status_code == 201, made.text
    up = made.json()
    source = f"gs://{stack['bucket']}/default/uploads/{up['upload_id']}/vine yard.mp4"
    assert up["source"] == source and up["resumable_url"]
    again = requests.post(f"{stack['api_url']}/v1/uploads", json=body, headers=auth, timeout=30)
    assert again.status_code == 200 and again.json()["upload_id"] == up["upload_id"]
    sent = requests.put(up["upload_url"], data=data, headers={"Content-Type": "video/mp4"}, timeout=60)
    assert sent.status_code == 200, sent.text

    def indexed() -> dict[str, Any] | None:
        now = api(stack, f"/v1/uploads/{up['upload_id']}").json()
        return now if now["status"] == "ready" else None

    asset_id = wait_for(indexed, "the uploaded file to be indexed")["asset_id"]
    hit = wait_for(lambda: top_hit(stack, "grape harvesters vineyard slopes", source), "the upload's hit")
    thumb = requests.get(hit["thumbnail_url"], timeout=30)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    media = requests.get(hit["media_url"], headers={"Range": "bytes=10-109"}, timeout=30)
    assert media.history[0].status_code == 302 and "X-Goog-Signature=" in media.url
    assert media.status_code == 206 and media.content == data[10:110]
    vtt = api(stack, f"/v1/assets/{asset_id}/captions.vtt")
    assert vtt.status_code == 200 and "vineyard" in vtt.text.lower()
    edl = api(stack, "/v1/search/export", q="grape harvesters vineyard slopes", k=1, format="edl")
    (event,) = pycmx.parse_cmx3600(io.StringIO(edl.text)).events
    assert event.edits[0].clip_name == "vine yard.mp4"

    # Re-index: a new run through the task queues, as a new asset of the same source that replaces it.
    redo = requests.post(f"{stack['api_url']}/v1/assets/{asset_id}/reindex", headers=auth, timeout=30)
    assert redo.status_code == 202, redo.text
    rerun = redo.json()
    assert rerun["asset_id"] != asset_id and rerun["job_id"] == f"job-{rerun['asset_id']}"
    wait_for(
        lambda: (
            [a["asset_id"] for a in assets_for(stack, source) if a["status"] == "ready"]
            == [rerun["asset_id"]]
        ),
        "the re-index to replace the asset",
    )
    assert api(stack, f"/v1/assets/{asset_id}").status_code == 404
    asset_id = rerun["asset_id"]

    gone = requests.delete(f"{stack['api_url']}/v1/assets/{asset_id}", headers=auth, timeout=30)
    assert gone.status_code == 200
    assert not assets_for(stack, source)
    assert top_hit(stack, "grape harvesters vineyard slopes", source) is None
    assert bucket(stack).get_blob(f"default/uploads/{up['upload_id']}/vine yard.mp4") is not None  # stays
    # The same object delivered again (a replayed event, a re-scan) is not indexed again.
    blob = bucket(stack).get_blob(f"default/uploads/{up['upload_id']}/vine yard.mp4")
    settings = Settings(
        home=Path(stack["logs"]).parent / "home",
        database_url=stack["database_url"],
        project=stack["project"],
        job_store="firestore",
        tasks_emulator_host=stack["tasks_emulator_host"],
        stage_urls=stack["stage_urls"],
        derived_bucket=stack["derived_bucket"],
    )
    services = Services(settings)
    try:
        again_in = ingest(
            services,
            CloudTasksDispatcher(settings),
            org_id="default",
            source=source,
            version=str(blob.generation),
            size=len(data),
            name=blob.name,
            content_type="video/mp4",
        )
    finally:
        services.close()
    assert again_in.status == "duplicate" and again_in.reason == "this version was deleted from the index"


def test_drive_folder_watch_end_to_end(
    stack: dict[str, Any], clips: dict[str, Path], drive: FakeDrive
) -> None:
    editor = "editor@default.example"  # a user of organisation `default`, member of the shared drive
    shared_drive = drive.add_shared_drive("Newsroom", members=[editor])
    folder = drive.add_folder("Rushes", shared_drive)
    headers = {"Authorization": f"Bearer {stack['token']}"}
    watches = f"{stack['drive_watch_url']}/v1/watches"
    resp = requests.post(watches, json={"folder_id": folder}, headers=headers, timeout=30)
    assert resp.status_code == 403 and resp.json()["code"] == "forbidden", resp.text  # no Drive connected

    # The organisation connects its Drive: consent URL -> Google (the fake) -> the callback.
    consent = requests.get(f"{stack['drive_watch_url']}/v1/drive/consent", headers=headers, timeout=30)
    at_google = requests.get(
        consent.json()["authorization_url"],
        headers={"X-Fake-User": editor},
        allow_redirects=False,
        timeout=30,
    )
    assert requests.get(at_google.headers["Location"], timeout=30).json()["status"] == "connected"
    resp = requests.post(watches, json={"folder_id": folder}, headers=headers, timeout=30)
    assert resp.status_code == 201 and resp.json()["auth"] == "delegated", resp.text
    beta = {
        "Authorization": f"Bearer {issue_token(os.environ.get('HEIMDEX_JWT_SECRET', DEV_SECRET), 'beta')}"
    }
    resp = requests.post(watches, json={"folder_id": folder}, headers=beta, timeout=30)
    assert resp.status_code == 403, resp.text  # knowing the folder id is not enough
    assert (
        requests.post(
            f"{stack['drive_watch_url']}/v1/watches", json={"folder_id": folder}, timeout=30
        ).status_code
        == 401
    )

    file_id = drive.add_file("vineyard.mp4", clips["vineyard"].read_bytes(), folder)  # pushes a notification
    source = f"drive://{file_id}"
    hit = wait_for(
        lambda: top_hit(stack, "grape harvesters on the vineyard slopes", source), "the Drive file"
    )
    assert any(d.state == "change" and d.status == 200 for d in drive.deliveries)
    # The hit plays without credentials: the API streams the Drive file by ranges, with the org's grant.
    played = requests.get(hit["media_url"], headers={"Range": "bytes=100-299"}, timeout=30)
    assert played.status_code == 206 and played.content == clips["vineyard"].read_bytes()[100:300]
    assert played.headers["Content-Range"].startswith("bytes 100-299/")
    media = [r for r in drive.requests if r.args.get("alt") == "media"]
    assert media and {r.principal for r in media} == {editor}  # the stages read with the org's grant
    assert [j["org_id"] for j in jobs(stack) if j["source"] == source] == ["default"]  # beta: none

    drive.trash(file_id)
    wait_for(lambda: not assets_for(stack, source), "the trashed Drive file to leave the index")

    forged = {"X-Goog-Channel-ID": "nope", "X-Goog-Channel-Token": "nope", "X-Goog-Resource-State": "change"}
    assert (
        requests.post(f"{stack['drive_watch_url']}/notifications", headers=forged, timeout=30).status_code
        == 403
    )
    assert requests.post(f"{stack['drive_watch_url']}/renew", timeout=30).json() == {"renewed": 0}


def test_stopping_the_stack_leaves_no_process(stack: dict[str, Any]) -> None:
    s: Stack = stack["_stack"]
    pids = [p.proc.pid for p in s.processes]
    groups = set(pids)
    s.stop()

    def leftovers() -> list[psutil.Process]:
        alive = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] in pids]
        return alive + [p for p in psutil.process_iter() if _group(p) in groups]

    wait_for(lambda: not leftovers(), "every process of the stack to exit", timeout=30)


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, psutil.Error):
        return None
