"""Bucket media through signed URLs, with the official clients against local servers: V4 signed URLs
(google-cloud-storage) against fake-gcs-server, presigned URLs (boto3) against moto. The API's media
URL of a bucket source redirects to them; a browser follows the redirect without credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from flask.testing import FlaskClient

from heimdex.adapters.gcs import signed_url, storage_client
from heimdex.adapters.s3 import presigned_url
from heimdex.api.app import create_app
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.dev import emulators
from heimdex.domain import make_asset_id
from heimdex.embedded.engine import Engine
from heimdex.services import Services
from tests.conftest import JWT_SECRET

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = emulators.gcs(tmp_path_factory.mktemp("gcs-logs"))
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = proc.env["STORAGE_EMULATOR_HOST"]
    client = storage_client("heimdex-dev")
    bucket = client.create_bucket("media")
    bucket.blob("tenant/clip.mp4").upload_from_string(DATA, content_type="video/mp4")
    yield client
    proc.stop()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket="archive")
    s3.put_object(Bucket="archive", Key="reels/clip.mp4", Body=DATA, ContentType="video/mp4")
    yield url
    server.stop()


def test_v4_signed_get_against_fake_gcs_server(gcs: Any) -> None:
    url = signed_url(gcs, "gs://media/tenant/clip.mp4", 600)
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=600" in url
    whole = requests.get(url, timeout=30)  # no credentials: the URL is the grant
    assert whole.status_code == 200 and whole.content == DATA
    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.content == DATA[100:200]


def test_v4_signed_upload_against_fake_gcs_server(gcs: Any) -> None:
    url = signed_url(gcs, "gs://media/tenant/uploads/u1/new.mp4", 600, method="PUT", content_type="video/mp4")
    sent = requests.put(url, data=b"new bytes", headers={"Content-Type": "video/mp4"}, timeout=30)
    assert sent.status_code == 200, sent.text
    blob = gcs.bucket("media").get_blob("tenant/uploads/u1/new.mp4")
    assert blob is not None and blob.download_as_bytes() == b"new bytes" and blob.content_type == "video/mp4"


def test_presigned_get_against_moto(moto: str) -> None:
    url = presigned_url(boto3.client("s3", endpoint_url=moto), "s3://archive/reels/clip.mp4", 600)
    assert "X-Amz-Signature=" in url or "Signature=" in url
    assert requests.get(url, timeout=30).content == DATA
    part = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
    assert part.status_code == 206 and part.content == DATA[:10]


@pytest.fixture(scope="module")
def bucket_api(
    engine: Engine, home: Path, moto: str, gcs: Any
) -> Iterator[tuple[FlaskClient, dict[str, str]]]:
    """The API over services that read S3 from moto and GCS from fake-gcs-server, with two assets
    whose sources are bucket objects."""
    services = Services(
        Settings(home=home, jwt_secret=JWT_SECRET, database_url=engine.db.url, s3_endpoint_url=moto)
    )
    ids = {}
    with services.db.org_tx("buckets") as conn:
        for source in ("gs://media/tenant/clip.mp4", "s3://archive/reels/clip.mp4"):
            ids[source] = make_asset_id("buckets", source, "1")
            conn.execute(
                "INSERT INTO assets (org_id, asset_id, source, version, status, scenes)"
                " VALUES ('buckets', %s, %s, '1', 'ready', 0)",
                (ids[source], source),
            )
    yield create_app(services).test_client(), ids
    services.close()


def test_bucket_media_urls_redirect_to_signed_urls(bucket_api: tuple[FlaskClient, dict[str, str]]) -> None:
    client, ids = bucket_api
    token = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'buckets')}"}
    for source, asset_id in ids.items():
        detail = client.get(f"/v1/assets/{asset_id}", headers=token).get_json()
        path = detail["media_url"].split("://", 1)[1].partition("/")[2]
        resp = client.get("/" + path)  # no Authorization: the signed Heimdex URL is the grant
        assert resp.status_code == 302, (source, resp.get_json())
        target = resp.headers["Location"]
        assert ("X-Goog-Signature=" in target) if source.startswith("gs://") else ("Signature=" in target)
        fetched = requests.get(target, headers={"Range": "bytes=5-14"}, timeout=30)
        assert fetched.status_code == 206 and fetched.content == DATA[5:15], source
