"""`drive://<fileId>` sources: ranged, chunked downloads into a temporary file, always with the
credentials of the organisation whose job reads them (`OrgDriveSources`)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseDownload

from heimdex.adapters.drive_access import CONSENT_PATH, AccessLost, DriveAccess, GrantRevoked, Session
from heimdex.adapters.drive_client import NUM_RETRIES, execute, status_of
from heimdex.config import Settings
from heimdex.core.storage import SourceInfo
from heimdex.domain import DRIVE_ID_RE, VIDEO_EXTENSIONS, MediaError

URI_PREFIX = "drive://"
DOWNLOAD_CHUNK = 8 * 1024 * 1024
DEFAULT_MAX_BYTES: int = Settings.model_fields["max_file_bytes"].default
FILE_FIELDS = "id,name,size,md5Checksum,version,modifiedTime,mimeType,trashed"


def drive_uri(file_id: str) -> str:
    return URI_PREFIX + file_id


def file_id_of(uri: str) -> str:
    fid = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""
    if not DRIVE_ID_RE.fullmatch(fid):
        raise ValueError(f"not a drive://<fileId> URI: {uri!r}")
    return fid


def content_version(meta: Mapping[str, Any]) -> str:
    """The content's identity: md5Checksum when Drive has one, else the file's `version`.

    `version` also moves on renames and other metadata edits; the checksum does not, so renaming a
    video does not re-index it.
    """
    return str(meta.get("md5Checksum") or meta.get("version") or "")


def is_video(meta: Mapping[str, Any]) -> bool:
    mime = str(meta.get("mimeType") or "")
    return mime.startswith("video/") or PurePosixPath(str(meta.get("name") or "")).suffix.lower() in (
        VIDEO_EXTENSIONS
    )


class DriveFileNotFound(MediaError):
    """Drive answered 404: no such file, or not one these credentials can read."""


class DriveSourceStore:
    """A SourceStore for `drive://<fileId>` (My Drive and shared drives) through one Drive client."""

    def __init__(
        self,
        service: Any,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        chunk_size: int = DOWNLOAD_CHUNK,
        tmp_dir: Path | None = None,
    ) -> None:
        self.service = service
        self.max_bytes = max_bytes
        self.chunk_size = chunk_size
        self.tmp_dir = tmp_dir

    def metadata(self, uri: str) -> dict[str, Any]:
        fid = file_id_of(uri)
        try:
            meta = execute(self.service.files().get(fileId=fid, fields=FILE_FIELDS, supportsAllDrives=True))
        except HttpError as exc:
            if status_of(exc) == 404:
                raise DriveFileNotFound(f"Drive file not found: {uri}") from exc
            raise
        if meta.get("trashed"):
            raise MediaError(f"Drive file is in the trash: {uri}")
        if "size" not in meta:
            raise MediaError(f"Drive item has no binary content ({meta.get('mimeType')}): {uri}")
        if int(meta["size"]) > self.max_bytes:
            raise MediaError(f"Drive file is larger than {self.max_bytes} bytes: {uri}")
        return meta

    def stat(self, uri: str) -> SourceInfo:
        meta = self.metadata(uri)
        return SourceInfo(uri=uri, size=int(meta["size"]), version=content_version(meta))

    def read_range(self, uri: str, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive) of a file: one ranged `alt=media` request, so that the API
        can stream Drive media to a player that seeks (api/media.py)."""
        request = self.service.files().get_media(fileId=file_id_of(uri), supportsAllDrives=True)
        request.headers["Range"] = f"bytes={first}-{last}"
        try:
            data: bytes = request.execute(num_retries=NUM_RETRIES)
        except HttpError as exc:
            if status_of(exc) == 404:
                raise DriveFileNotFound(f"Drive file not found: {uri}") from exc
            raise
        return data

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        meta = self.metadata(uri)
        suffix = PurePosixPath(str(meta.get("name") or "")).suffix[:16]
        request = self.service.files().get_media(fileId=meta["id"], supportsAllDrives=True)
        with tempfile.NamedTemporaryFile(prefix="heimdex-src-", suffix=suffix, dir=self.tmp_dir) as tmp:
            downloader = MediaIoBaseDownload(tmp, request, chunksize=self.chunk_size)
            done = False
            while not done:
                try:
                    _, done = downloader.next_chunk(num_retries=NUM_RETRIES)
                except HttpError as exc:
                    if status_of(exc) == 404:
                        raise DriveFileNotFound(f"Drive file not found: {uri}") from exc
                    raise
                if tmp.tell() > self.max_bytes:
                    raise MediaError(f"Drive file is larger than {self.max_bytes} bytes: {uri}")
            tmp.flush()
            yield Path(tmp.name)


class OrgDriveSources:
    """The `drive://` sources of one organisation: read with its own grant when it has one, and with
    the deployment's account when the operator mapped a folder to it (a file the grant cannot see is
    tried there). A job only ever holds a file that one of the organisation's watches listed with
    those same credentials. A revoked grant fails the job with the reason (`AccessLost`, no retry)."""

    def __init__(
        self,
        access: DriveAccess,
        org_id: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        chunk_size: int = DOWNLOAD_CHUNK,
        tmp_dir: Path | None = None,
    ) -> None:
        self.access = access
        self.org_id = org_id
        self.options: dict[str, Any] = {"chunk_size": chunk_size, "tmp_dir": tmp_dir}
        self.max_bytes = max_bytes

    def _sessions(self) -> Iterator[Session | GrantRevoked]:
        grant = self.access.grant(self.org_id)
        if grant is not None:
            try:
                yield self.access.open(self.org_id, "delegated")
            except GrantRevoked as exc:
                yield exc
        if self.access.maps_any(self.org_id):
            yield self.access.open(self.org_id, "service_account")

    def _find(self, uri: str) -> tuple[Session, DriveSourceStore]:
        revoked: GrantRevoked | None = None
        missing: DriveFileNotFound | None = None
        for session in self._sessions():
            if isinstance(session, GrantRevoked):
                revoked = session
                continue
            store = DriveSourceStore(session.service, self.max_bytes, **self.options)
            try:
                with self.access.guarded(session):
                    store.metadata(uri)
                return session, store
            except GrantRevoked as exc:
                revoked = exc
            except DriveFileNotFound as exc:
                missing = exc
        if revoked is not None:
            raise AccessLost(f"cannot read {uri}: {revoked.reason}")
        if missing is not None:
            raise missing
        raise AccessLost(
            f"cannot read {uri}: organisation {self.org_id} has no Drive access (connect Drive at"
            f" {CONSENT_PATH})"
        )

    def stat(self, uri: str) -> SourceInfo:
        session, store = self._find(uri)
        try:
            with self.access.guarded(session):
                return store.stat(uri)
        except GrantRevoked as exc:
            raise AccessLost(f"cannot read {uri}: {exc.reason}") from exc

    def read_range(self, uri: str, first: int, last: int) -> bytes:
        session, store = self._find(uri)
        try:
            with self.access.guarded(session):
                return store.read_range(uri, first, last)
        except GrantRevoked as exc:
            raise AccessLost(f"cannot read {uri}: {exc.reason}") from exc

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        session, store = self._find(uri)
        try:
            with self.access.guarded(session), store.local_path(uri) as path:
                yield path
        except GrantRevoked as exc:
            raise AccessLost(f"cannot read {uri}: {exc.reason}") from exc
