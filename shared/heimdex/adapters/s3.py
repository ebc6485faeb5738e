"""Amazon S3 (or any S3 API, moto's server in tests) as a source of `s3://bucket/key` media."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from heimdex.core.storage import SourceInfo
from heimdex.domain import MediaError


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3:// object URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def s3_client(endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


class S3SourceStore:
    def __init__(self, client: Any, max_bytes: int) -> None:
        self.client = client
        self.max_bytes = max_bytes

    def stat(self, uri: str) -> SourceInfo:
        bucket, key = split_s3(uri)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise MediaError(f"object not readable: {uri} ({exc.response['Error'].get('Code')})") from exc
        version = head.get("VersionId") or head["ETag"].strip('"')
        return SourceInfo(uri=uri, size=int(head["ContentLength"]), version=str(version))

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        bucket, key = split_s3(uri)
        if self.stat(uri).size > self.max_bytes:
            raise MediaError(f"object is larger than {self.max_bytes} bytes")
        with tempfile.NamedTemporaryFile(prefix="heimdex-src-", suffix=Path(key).suffix[:16]) as tmp:
            self.client.download_file(bucket, key, tmp.name)  # multipart ranged GETs
            yield Path(tmp.name)


def presigned_url(client: Any, uri: str, ttl_s: int) -> str:
    """A presigned GET URL of an object (SigV4, signed locally with the client's credentials)."""
    bucket, key = split_s3(uri)
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
    )
    return url
