"""The local filesystem behind the blob interfaces of `heimdex.core.storage`: the embedded default."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from heimdex.core.storage import SourceInfo


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
