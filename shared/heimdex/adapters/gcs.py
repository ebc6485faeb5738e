"""Google Cloud Storage: derived outputs in one bucket, and `gs://` sources read by streaming download.

The official client honours STORAGE_EMULATOR_HOST (fake-gcs-server locally).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from heimdex.core.storage import SourceInfo
from heimdex.domain import MediaError

DOWNLOAD_CHUNK = 16 * 1024 * 1024


def storage_client(project: str | None) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "heimdex-dev", credentials=AnonymousCredentials())
    return storage.Client(project=project)


def split_gs(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise ValueError(f"not a gs:// object URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


class GcsDerivedStore:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)

    def write_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.bucket.blob(key).upload_from_string(data, content_type=content_type)

    def read_bytes(self, key: str) -> bytes:
        data: bytes = self.bucket.blob(key).download_as_bytes()
        return data

    def exists(self, key: str) -> bool:
        return bool(self.bucket.blob(key).exists())

    def delete_prefix(self, prefix: str) -> None:
        for blob in self.client.list_blobs(self.bucket, prefix=prefix):
            with suppress(gexc.NotFound):
                blob.delete()

    def url(self, key: str) -> str:
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        if host:
            return f"{host.rstrip('/')}/storage/v1/b/{self.bucket.name}/o/{quote(key, safe='')}?alt=media"
        return f"https://storage.googleapis.com/{self.bucket.name}/{quote(key)}"


class GcsSourceStore:
    def __init__(self, client: storage.Client, max_bytes: int) -> None:
        self.client = client
        self.max_bytes = max_bytes

    def stat(self, uri: str) -> SourceInfo:
        bucket, name = split_gs(uri)
        blob = self.client.bucket(bucket).get_blob(name)
        if blob is None:
            raise MediaError(f"object not found: {uri}")
        return SourceInfo(uri=uri, size=int(blob.size or 0), version=str(blob.generation))

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        bucket, name = split_gs(uri)
        blob = self.client.bucket(bucket).blob(name, chunk_size=DOWNLOAD_CHUNK)
        suffix = Path(name).suffix[:16]
        with tempfile.NamedTemporaryFile(prefix="heimdex-src-", suffix=suffix) as tmp:
            try:
                blob.download_to_filename(tmp.name)  # chunked, ranged requests
            except gexc.NotFound as exc:
                raise MediaError(f"object not found: {uri}") from exc
            if os.path.getsize(tmp.name) > self.max_bytes:
                raise MediaError(f"object is larger than {self.max_bytes} bytes")
            yield Path(tmp.name)


_emulator_signer: list[Any] = []


def _emulator_credentials() -> Any:
    """fake-gcs-server does not check V4 signatures, but the client needs a key to make one: a
    throwaway service-account key, made once per process. Never used against real Cloud Storage."""
    if not _emulator_signer:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from google.oauth2 import service_account

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "client_email": "emulator@heimdex-dev.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        _emulator_signer.append(service_account.Credentials.from_service_account_info(info))
    return _emulator_signer[0]


def signed_url(
    client: storage.Client,
    uri: str,
    ttl_s: int,
    *,
    method: str = "GET",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """A V4 signed URL of an object. Signed with the client's own key when it has one (a service
    account key file), else through IAM signBlob as the service account the code runs as (Cloud
    Run and Functions: roles/iam.serviceAccountTokenCreator on itself); on the emulator, with a
    throwaway key (fake-gcs-server accepts any signature)."""
    from datetime import timedelta

    bucket, name = split_gs(uri)
    blob = client.bucket(bucket).blob(name)
    kwargs: dict[str, Any] = {
        "version": "v4",
        "expiration": timedelta(seconds=ttl_s),
        "method": method,
        "content_type": content_type,
        "headers": headers,
    }
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        kwargs["api_access_endpoint"] = host.rstrip("/")
        kwargs["credentials"] = _emulator_credentials()
    else:
        creds = client._credentials
        if not hasattr(creds, "sign_bytes"):
            import google.auth.transport.requests

            creds.refresh(google.auth.transport.requests.Request())
            kwargs["service_account_email"] = creds.service_account_email
            kwargs["access_token"] = creds.token
    url: str = blob.generate_signed_url(**kwargs)
    return url
