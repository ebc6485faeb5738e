"""Google Cloud Storage: derived outputs in one bucket, and `gs://` sources read by streaming download.

The official client honours STORAGE_EMULATOR_HOST (fake-gcs-server locally).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
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
