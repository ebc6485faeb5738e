"""Pick the source adapter by URI scheme: a plain path is local, gs://, s3:// and drive:// are remote."""

from __future__ import annotations

from typing import Any

from heimdex.adapters.local import LocalSourceStore
from heimdex.config import Settings
from heimdex.core.storage import SourceInfo, SourceStore


def scheme(uri: str) -> str:
    head, sep, _ = uri.partition("://")
    return head if sep else "file"


class RoutingSourceStore:
    """A SourceStore that delegates to one adapter per scheme, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stores: dict[str, SourceStore] = {}

    def _store(self, uri: str) -> SourceStore:
        kind = scheme(uri)
        if kind not in self._stores:
            self._stores[kind] = self._build(kind)
        return self._stores[kind]

    def _build(self, kind: str) -> SourceStore:
        s = self.settings
        if kind == "file":
            return LocalSourceStore()
        if kind == "gs":
            from heimdex.adapters.gcs import GcsSourceStore, storage_client

            return GcsSourceStore(storage_client(s.project), s.max_file_bytes)
        if kind == "s3":
            from heimdex.adapters.s3 import S3SourceStore, s3_client

            return S3SourceStore(s3_client(s.s3_endpoint_url), s.max_file_bytes)
        if kind == "drive":
            from heimdex.adapters.drive import DriveSourceStore, drive_service

            return DriveSourceStore(drive_service(s), s.max_file_bytes)
        raise ValueError(f"unsupported source scheme {kind!r}")

    def stat(self, uri: str) -> SourceInfo:
        return self._store(uri).stat(uri)

    def local_path(self, uri: str) -> Any:
        return self._store(uri).local_path(uri)
