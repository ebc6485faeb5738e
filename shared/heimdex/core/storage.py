"""Blob access behind two small interfaces: derived outputs, and the source media.

The implementations live beside this contract, in `heimdex.adapters`: the local filesystem (the
embedded default), GCS, Drive and S3, so stage code never knows where bytes live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


class DerivedStore(Protocol):
    """Stage outputs: JSON documents and thumbnails under deterministic keys."""

    def write_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def url(self, key: str) -> str: ...


def write_json(store: DerivedStore, key: str, doc: Any) -> None:
    store.write_bytes(key, json.dumps(doc, ensure_ascii=False, indent=1).encode(), "application/json")


def read_json(store: DerivedStore, key: str) -> Any:
    return json.loads(store.read_bytes(key))


@dataclass(frozen=True)
class SourceInfo:
    uri: str
    size: int
    version: str


class SourceStore(Protocol):
    """Read access to original media, wherever it lives."""

    def stat(self, uri: str) -> SourceInfo: ...

    def local_path(self, uri: str) -> Any:
        """A context manager yielding a local, seekable path to the media."""
        ...
