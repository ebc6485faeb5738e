"""Pick the source adapter by URI scheme: a plain path is local, gs://, s3:// and drive:// are remote.

Drive is read with the credentials of the organisation whose job it is (`for_org`): a stage's
sources are always `RoutingSourceStore.for_org(ref.org_id)`.
"""

from __future__ import annotations

import threading
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
        self._drive: dict[str, SourceStore] = {}  # per organisation
        self._drive_access: Any = None
        self._lock = threading.Lock()

    def _store(self, uri: str, org_id: str | None = None) -> SourceStore:
        kind = scheme(uri)
        if kind == "drive":
            if org_id is None:
                raise ValueError("drive:// sources are read with an organisation's credentials: use for_org")
            return self._drive_store(org_id)
        with self._lock:
            if kind not in self._stores:
                self._stores[kind] = self._build(kind)
            return self._stores[kind]

    def _drive_store(self, org_id: str) -> SourceStore:
        from heimdex.adapters.drive_access import DriveAccess
        from heimdex.adapters.drive_sources import OrgDriveSources

        with self._lock:
            if self._drive_access is None:
                self._drive_access = DriveAccess.from_settings(self.settings)
            if org_id not in self._drive:
                self._drive[org_id] = OrgDriveSources(
                    self._drive_access, org_id, self.settings.max_file_bytes
                )
            return self._drive[org_id]

    def for_org(self, org_id: str) -> SourceStore:
        """The sources as organisation `org_id` reads them (its own Drive credentials)."""
        return OrgSources(self, org_id)

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
        raise ValueError(f"unsupported source scheme {kind!r}")

    def stat(self, uri: str) -> SourceInfo:
        return self._store(uri).stat(uri)

    def local_path(self, uri: str) -> Any:
        return self._store(uri).local_path(uri)


class OrgSources:
    """A RoutingSourceStore seen by one organisation."""

    def __init__(self, routing: RoutingSourceStore, org_id: str) -> None:
        self.routing = routing
        self.org_id = org_id

    def stat(self, uri: str) -> SourceInfo:
        return self.routing._store(uri, self.org_id).stat(uri)

    def local_path(self, uri: str) -> Any:
        return self.routing._store(uri, self.org_id).local_path(uri)

    def read_range(self, uri: str, first: int, last: int) -> bytes:
        """Bytes first..last of a source whose store reads ranges (Drive), for the media API."""
        store = self.routing._store(uri, self.org_id)
        if not hasattr(store, "read_range"):
            raise ValueError(f"{scheme(uri)} sources are not read by range")
        data: bytes = store.read_range(uri, first, last)
        return data
