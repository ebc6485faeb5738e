"""Blob access behind two small interfaces: derived outputs, and the source media.

The embedded default is the local filesystem; the cloud adapters (GCS, Drive, S3) implement the
same protocols so stage code never knows where bytes live.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


class LocalDerivedStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def write_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # atomic: a retried stage never leaves half a file

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def url(self, key: str) -> str:
        return str(self._path(key))


class LocalSourceStore:
    """Sources are absolute paths on this machine."""

    def stat(self, uri: str) -> SourceInfo:
        st = os.stat(uri)
        return SourceInfo(uri=uri, size=st.st_size, version=f"{st.st_size}-{st.st_mtime_ns}")

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        yield Path(uri)
