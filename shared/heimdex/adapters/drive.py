"""Google Drive: `drive://<fileId>` sources, and watched folders fed by push notifications.

- `drive_service` builds the official client (against a local fake when `drive_api_root` is set).
- `DriveSourceStore` reads media with ranged, chunked downloads into a temporary file.
- `DriveWatcher` opens one `changes.watch` channel per (organisation, folder), authenticates the
  notifications Drive POSTs to the webhook, and turns the change log into `Upsert`/`Removal` records.
  Channels last at most a week and cannot be extended: `renew` replaces those close to expiry.
- `WatchStore` keeps the watches (`FirestoreWatchStore` in the cloud). The page token only moves
  forward by compare-and-set in a transaction, so a repeated or concurrent notification never yields
  the same change twice. The flip side: changes are returned after the token has moved, so a caller
  that dies before acting on them loses them (ingest is idempotent, acting twice would be harmless).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import googleapiclient
import httplib2
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from googleapiclient.discovery import build, build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaIoBaseDownload

from heimdex.config import Settings
from heimdex.core.storage import SourceInfo
from heimdex.domain import VIDEO_EXTENSIONS, MediaError, validate_org

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/drive.readonly"
FOLDER_MIME = "application/vnd.google-apps.folder"
URI_PREFIX = "drive://"
DOWNLOAD_CHUNK = 8 * 1024 * 1024
DEFAULT_MAX_BYTES: int = Settings.model_fields["max_file_bytes"].default
HTTP_TIMEOUT_S = 60
NUM_RETRIES = 3  # 429, 5xx and rate-limit 403s, with backoff (the client's own retry)
RENEW_MARGIN_S = 2 * 24 * 3600.0
MAX_ANCESTORS = 100
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")  # fullmatch

FILE_FIELDS = "id,name,size,md5Checksum,version,modifiedTime,mimeType,trashed"
CHANGE_FIELDS = (
    "nextPageToken,newStartPageToken,"
    "changes(changeType,fileId,removed,file(id,name,mimeType,size,version,md5Checksum,trashed,parents))"
)


# ---------------------------------------------------------------- the client


def _discovery_document(root: str) -> dict[str, Any]:
    """The drive v3 document shipped with the client, with every endpoint moved under `root`."""
    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "drive.v3.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    root = root.rstrip("/") + "/"
    doc["rootUrl"] = doc["mtlsRootUrl"] = root
    doc["baseUrl"] = root + doc["servicePath"]
    return doc


def _request_builder(make_http: Callable[[], Any]) -> Callable[..., HttpRequest]:
    """httplib2 connections are not thread-safe: give every request its own."""

    def build_request(_http: Any, *args: Any, **kwargs: Any) -> HttpRequest:
        return HttpRequest(make_http(), *args, **kwargs)

    return build_request


def drive_service(settings: Settings) -> Any:
    """A Drive v3 client: unauthenticated against `drive_api_root` when set, else application default
    credentials with the read-only scope."""
    if settings.drive_api_root:
        return build_from_document(
            _discovery_document(settings.drive_api_root),
            http=httplib2.Http(timeout=HTTP_TIMEOUT_S),
            requestBuilder=_request_builder(lambda: httplib2.Http(timeout=HTTP_TIMEOUT_S)),
        )
    import google.auth
    from google_auth_httplib2 import AuthorizedHttp

    credentials = google.auth.default(scopes=[SCOPE])[0]
    return build(
        "drive",
        "v3",
        credentials=credentials,
        cache_discovery=False,
        requestBuilder=_request_builder(
            lambda: AuthorizedHttp(credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_S))
        ),
    )


def _execute(request: Any) -> dict[str, Any]:
    result: dict[str, Any] = request.execute(num_retries=NUM_RETRIES)
    return result or {}


def _status(exc: HttpError) -> int:
    return int(exc.resp.status)


def drive_uri(file_id: str) -> str:
    return URI_PREFIX + file_id


def file_id_of(uri: str) -> str:
    fid = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""
    if not _ID_RE.fullmatch(fid):
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


# ---------------------------------------------------------------- sources


class DriveSourceStore:
    """A SourceStore for `drive://<fileId>` (My Drive and shared drives)."""

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

    def _metadata(self, uri: str) -> dict[str, Any]:
        fid = file_id_of(uri)
        try:
            meta = _execute(self.service.files().get(fileId=fid, fields=FILE_FIELDS, supportsAllDrives=True))
        except HttpError as exc:
            if _status(exc) == 404:
                raise MediaError(f"Drive file not found: {uri}") from exc
            raise
        if meta.get("trashed"):
            raise MediaError(f"Drive file is in the trash: {uri}")
        if "size" not in meta:
            raise MediaError(f"Drive item has no binary content ({meta.get('mimeType')}): {uri}")
        if int(meta["size"]) > self.max_bytes:
            raise MediaError(f"Drive file is larger than {self.max_bytes} bytes: {uri}")
        return meta

    def stat(self, uri: str) -> SourceInfo:
        meta = self._metadata(uri)
        return SourceInfo(uri=uri, size=int(meta["size"]), version=content_version(meta))

    @contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        meta = self._metadata(uri)
        suffix = PurePosixPath(str(meta.get("name") or "")).suffix[:16]
        request = self.service.files().get_media(fileId=meta["id"], supportsAllDrives=True)
        with tempfile.NamedTemporaryFile(prefix="heimdex-src-", suffix=suffix, dir=self.tmp_dir) as tmp:
            downloader = MediaIoBaseDownload(tmp, request, chunksize=self.chunk_size)
            done = False
            while not done:
                try:
                    _, done = downloader.next_chunk(num_retries=NUM_RETRIES)
                except HttpError as exc:
                    if _status(exc) == 404:
                        raise MediaError(f"Drive file not found: {uri}") from exc
                    raise
                if tmp.tell() > self.max_bytes:
                    raise MediaError(f"Drive file is larger than {self.max_bytes} bytes: {uri}")
            tmp.flush()
            yield Path(tmp.name)


# ---------------------------------------------------------------- watch state


@dataclass(frozen=True)
class Channel:
    """A changes.watch channel. Only a hash of the token is kept."""

    id: str
    token_sha256: str
    expiration_ms: int
    resource_id: str | None = None  # None until Drive has answered changes.watch


@dataclass(frozen=True)
class Watch:
    org_id: str
    folder_id: str
    drive_id: str | None  # the shared drive holding the folder; None for My Drive
    page_token: str
    channels: tuple[Channel, ...] = field(default_factory=tuple)  # the last is current

    @property
    def channel(self) -> Channel:
        return self.channels[-1]

    def find_channel(self, channel_id: str) -> Channel | None:
        return next((c for c in self.channels if c.id == channel_id), None)


class WatchStore(Protocol):
    def create(self, watch: Watch) -> bool:
        """Store a new watch; False (and nothing written) when (org, folder) already has one."""
        ...

    def get(self, org_id: str, folder_id: str) -> Watch | None: ...
    def find_by_channel(self, channel_id: str) -> Watch | None: ...
    def list_all(self) -> list[Watch]: ...
    def delete(self, org_id: str, folder_id: str) -> None: ...

    def put_channel(self, org_id: str, folder_id: str, channel: Channel) -> None:
        """Replace the channel with the same id, or append it as the current one."""
        ...

    def drop_channel(self, org_id: str, folder_id: str, channel_id: str) -> None: ...

    def advance(self, org_id: str, folder_id: str, from_token: str, to_token: str) -> bool:
        """Compare-and-set the page token: True if it was `from_token` and is now `to_token`."""
        ...


def watch_doc_id(org_id: str, folder_id: str) -> str:
    validate_org(org_id)  # no ':' in either part, so the id is unambiguous
    validate_folder_id(folder_id)
    return f"{org_id}:{folder_id}"


def validate_folder_id(folder_id: object) -> str:
    """A Drive file id: 1-200 of letters, digits, '_' and '-' (what Drive issues)."""
    if not isinstance(folder_id, str) or not _ID_RE.fullmatch(folder_id):
        raise ValueError(f"invalid Drive folder id {folder_id!r}")
    return folder_id


def _channel_to_doc(c: Channel) -> dict[str, Any]:
    return {
        "id": c.id,
        "token_sha256": c.token_sha256,
        "expiration_ms": c.expiration_ms,
        "resource_id": c.resource_id,
    }


def _watch_from_doc(doc: Mapping[str, Any]) -> Watch:
    return Watch(
        org_id=doc["org_id"],
        folder_id=doc["folder_id"],
        drive_id=doc.get("drive_id"),
        page_token=doc["page_token"],
        channels=tuple(
            Channel(c["id"], c["token_sha256"], int(c["expiration_ms"]), c.get("resource_id"))
            for c in doc.get("channels", [])
        ),
    )


class FirestoreWatchStore:
    """One document per watched folder; `channel_ids` mirrors `channels` for the lookup query."""

    def __init__(self, client: firestore.Client, collection: str) -> None:
        self.client = client
        self.watches = client.collection(collection)

    def _ref(self, org_id: str, folder_id: str) -> Any:
        return self.watches.document(watch_doc_id(org_id, folder_id))

    def _transact(self, fn: Callable[[Any], Any]) -> Any:
        return firestore.transactional(fn)(self.client.transaction(max_attempts=20))

    def _edit_channels(
        self, org_id: str, folder_id: str, edit: Callable[[list[Channel]], list[Channel]]
    ) -> None:
        ref = self._ref(org_id, folder_id)

        def txn(tx: Any) -> None:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                raise KeyError(f"no watch for {org_id}/{folder_id}")
            channels = edit(list(_watch_from_doc(snap.to_dict() or {}).channels))
            tx.update(
                ref,
                {
                    "channels": [_channel_to_doc(c) for c in channels],
                    "channel_ids": [c.id for c in channels],
                    "updated_at": datetime.now(UTC),
                },
            )

        self._transact(txn)

    def create(self, watch: Watch) -> bool:
        ref = self._ref(watch.org_id, watch.folder_id)

        def txn(tx: Any) -> bool:
            if ref.get(transaction=tx).exists:
                return False
            tx.create(
                ref,
                {
                    "org_id": watch.org_id,
                    "folder_id": watch.folder_id,
                    "drive_id": watch.drive_id,
                    "page_token": watch.page_token,
                    "channels": [_channel_to_doc(c) for c in watch.channels],
                    "channel_ids": [c.id for c in watch.channels],
                    "created_at": datetime.now(UTC),
                    "updated_at": datetime.now(UTC),
                },
            )
            return True

        created: bool = self._transact(txn)
        return created

    def get(self, org_id: str, folder_id: str) -> Watch | None:
        snap = self._ref(org_id, folder_id).get()
        return _watch_from_doc(snap.to_dict() or {}) if snap.exists else None

    def find_by_channel(self, channel_id: str) -> Watch | None:
        query = self.watches.where(filter=FieldFilter("channel_ids", "array_contains", channel_id)).limit(1)
        for snap in query.stream():
            return _watch_from_doc(snap.to_dict() or {})
        return None

    def list_all(self) -> list[Watch]:
        return [_watch_from_doc(snap.to_dict() or {}) for snap in self.watches.stream()]

    def delete(self, org_id: str, folder_id: str) -> None:
        self._ref(org_id, folder_id).delete()

    def put_channel(self, org_id: str, folder_id: str, channel: Channel) -> None:
        def edit(channels: list[Channel]) -> list[Channel]:
            if any(c.id == channel.id for c in channels):
                return [channel if c.id == channel.id else c for c in channels]
            return [*channels, channel]

        self._edit_channels(org_id, folder_id, edit)

    def drop_channel(self, org_id: str, folder_id: str, channel_id: str) -> None:
        self._edit_channels(org_id, folder_id, lambda cs: [c for c in cs if c.id != channel_id])

    def advance(self, org_id: str, folder_id: str, from_token: str, to_token: str) -> bool:
        ref = self._ref(org_id, folder_id)

        def txn(tx: Any) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or snap.get("page_token") != from_token:
                return False
            tx.update(ref, {"page_token": to_token, "updated_at": datetime.now(UTC)})
            return True

        moved: bool = self._transact(txn)
        return moved


# ---------------------------------------------------------------- changes


@dataclass(frozen=True)
class Upsert:
    """A video under a watched folder was added or changed."""

    org_id: str
    uri: str
    name: str
    version: str
    size: int


@dataclass(frozen=True)
class Removal:
    """A file was trashed or deleted (or is no longer visible); unknown ones are harmless to remove."""

    org_id: str
    uri: str


Change = Upsert | Removal


class Headers(Protocol):
    """HTTP request headers: a Mapping, or a framework's multi-dict (Flask's request.headers)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class NotificationRefused(Exception):
    """A push notification that is not from a channel we opened (unknown id, wrong token)."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DriveWatcher:
    def __init__(
        self,
        service: Any,
        store: WatchStore,
        settings: Settings,
        *,
        page_size: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store = store
        self.settings = settings
        self.page_size = page_size
        self.clock = clock

    # -- channels

    def _open_channel(self, watch: Watch, now: float) -> Channel:
        """Open a channel from the watch's page token. It is stored before Drive is asked, so that the
        "sync" message and early notifications find it; it is dropped again if Drive refuses."""
        address = self.settings.drive_webhook_url
        if not address:
            raise ValueError("HEIMDEX_DRIVE_WEBHOOK_URL is not set: Drive has nowhere to send notifications")
        token = secrets.token_urlsafe(32)
        pending = Channel(
            id=f"heimdex-{uuid.uuid4().hex}",
            token_sha256=_token_hash(token),
            expiration_ms=int((now + self.settings.drive_channel_ttl_s) * 1000),
        )
        self.store.put_channel(watch.org_id, watch.folder_id, pending)
        try:
            resp = _execute(
                self.service.changes().watch(
                    pageToken=watch.page_token,
                    supportsAllDrives=True,
                    includeItemsFromAllDrives=True,
                    includeRemoved=True,
                    **({"driveId": watch.drive_id} if watch.drive_id else {}),
                    body={
                        "id": pending.id,
                        "type": "web_hook",
                        "address": address,
                        "token": token,
                        "expiration": str(pending.expiration_ms),
                    },
                )
            )
        except Exception:
            self.store.drop_channel(watch.org_id, watch.folder_id, pending.id)
            raise
        opened = replace(
            pending,
            resource_id=resp["resourceId"],
            expiration_ms=int(resp.get("expiration") or pending.expiration_ms),
        )
        self.store.put_channel(watch.org_id, watch.folder_id, opened)
        return opened

    def _close_channel(self, watch: Watch, channel: Channel) -> None:
        if channel.resource_id is not None:
            try:
                _execute(
                    self.service.channels().stop(body={"id": channel.id, "resourceId": channel.resource_id})
                )
            except HttpError as exc:
                if _status(exc) != 404:  # already expired or stopped
                    raise
        self.store.drop_channel(watch.org_id, watch.folder_id, channel.id)

    def register(self, org_id: str, folder_id: str) -> Watch:
        """Watch a folder (My Drive or a shared drive) for one organisation. Idempotent."""
        watch_doc_id(org_id, folder_id)
        existing = self.store.get(org_id, folder_id)
        if existing is not None:
            return existing
        meta = _execute(
            self.service.files().get(
                fileId=folder_id, fields="id,mimeType,driveId,trashed", supportsAllDrives=True
            )
        )
        if meta.get("mimeType") != FOLDER_MIME or meta.get("id") != folder_id:
            raise ValueError(f"Drive item {folder_id!r} is not a folder id")
        drive_id = meta.get("driveId")
        start = _execute(
            self.service.changes().getStartPageToken(
                supportsAllDrives=True, **({"driveId": drive_id} if drive_id else {})
            )
        )
        watch = Watch(org_id, folder_id, drive_id, start["startPageToken"])
        if not self.store.create(watch):
            return self.store.get(org_id, folder_id) or watch
        try:
            self._open_channel(watch, self.clock())
        except Exception:
            self.store.delete(org_id, folder_id)
            raise
        return self.store.get(org_id, folder_id) or watch

    def unregister(self, org_id: str, folder_id: str) -> bool:
        """Stop the folder's channels and forget it; False if it was not watched."""
        watch = self.store.get(org_id, folder_id)
        if watch is None:
            return False
        for channel in watch.channels:
            self._close_channel(watch, channel)
        self.store.delete(org_id, folder_id)
        return True

    def renew(self, now: float | None = None, margin_s: float = RENEW_MARGIN_S) -> int:
        """Replace every channel that expires within `margin_s`: open the new one, then stop the old.

        A watch whose new channel cannot be opened is logged and left for the next run; returns how
        many were renewed.
        """
        now = self.clock() if now is None else now
        deadline_ms = (now + margin_s) * 1000
        renewed = 0
        for watch in self.store.list_all():
            if watch.channels and watch.channel.expiration_ms > deadline_ms:
                continue
            key = {"org_id": watch.org_id, "folder_id": watch.folder_id}
            try:
                new = self._open_channel(watch, now)
            except Exception:
                log.exception("opening a new Drive channel failed; the old one stays", extra=key)
                continue
            log.info("Drive channel renewed", extra={**key, "channel_id": new.id})
            for old in watch.channels:
                try:
                    self._close_channel(watch, old)
                except Exception:  # it expires on its own; its notifications are still accepted meanwhile
                    log.exception(
                        "stopping a replaced Drive channel failed", extra={**key, "channel_id": old.id}
                    )
            renewed += 1
        return renewed

    # -- notifications

    def _authenticate(self, headers: Headers) -> tuple[Watch, str]:
        h = {k.lower(): v for k, v in headers.items()}
        channel_id, token = h.get("x-goog-channel-id"), h.get("x-goog-channel-token")
        if not channel_id or token is None:
            raise NotificationRefused("no X-Goog-Channel-ID / X-Goog-Channel-Token")
        watch = self.store.find_by_channel(channel_id)
        channel = watch.find_channel(channel_id) if watch else None
        if watch is None or channel is None:
            raise NotificationRefused(f"unknown channel {channel_id!r}")
        if not hmac.compare_digest(channel.token_sha256, _token_hash(token)):
            raise NotificationRefused(f"wrong token for channel {channel_id!r}")
        resource_id = h.get("x-goog-resource-id")
        if channel.resource_id and resource_id and resource_id != channel.resource_id:
            raise NotificationRefused(f"wrong resource for channel {channel_id!r}")
        return watch, h.get("x-goog-resource-state", "")

    def handle_notification(self, headers: Headers) -> list[Change]:
        """Authenticate a push notification and return the changes since the stored page token.

        Raises NotificationRefused for unknown channels and wrong tokens (answer 4xx: Drive does not
        retry those). A "sync" message yields nothing. Only the handler that moves the page token
        returns a page; one that loses the race lists again from the new token.
        """
        watch, state = self._authenticate(headers)
        if state == "sync":
            return []
        for _ in range(20):
            changes, new_token = self._list_changes(watch)
            if new_token == watch.page_token:
                return []
            if self.store.advance(watch.org_id, watch.folder_id, watch.page_token, new_token):
                return changes
            current = self.store.get(watch.org_id, watch.folder_id)
            if current is None:
                return []
            watch = current
        raise RuntimeError(f"page token of {watch.org_id}/{watch.folder_id} kept moving; giving up")

    def _list_changes(self, watch: Watch) -> tuple[list[Change], str]:
        found: dict[str, Change] = {}  # per file, the latest wins
        ancestors: dict[str, list[str]] = {}
        token = watch.page_token
        while True:
            resp = _execute(
                self.service.changes().list(
                    pageToken=token,
                    pageSize=self.page_size,
                    supportsAllDrives=True,
                    includeItemsFromAllDrives=True,
                    includeRemoved=True,
                    fields=CHANGE_FIELDS,
                    **({"driveId": watch.drive_id} if watch.drive_id else {}),
                )
            )
            for entry in resp.get("changes", []):
                fid = entry.get("fileId")
                if entry.get("changeType", "file") != "file" or not fid:
                    continue
                change = self._interpret(watch, fid, entry, ancestors)
                if change is None:
                    found.pop(fid, None)
                else:
                    found[fid] = change
            if "newStartPageToken" in resp:
                return list(found.values()), str(resp["newStartPageToken"])
            token = resp["nextPageToken"]

    def _interpret(
        self, watch: Watch, fid: str, entry: Mapping[str, Any], ancestors: dict[str, list[str]]
    ) -> Change | None:
        meta = entry.get("file")
        if entry.get("removed") or not meta:
            return Removal(watch.org_id, drive_uri(fid))
        if not is_video(meta) or not self._under(meta.get("parents") or [], watch.folder_id, ancestors):
            return None
        if meta.get("trashed"):
            return Removal(watch.org_id, drive_uri(fid))
        if "size" not in meta:
            return None
        return Upsert(
            watch.org_id,
            drive_uri(fid),
            str(meta.get("name") or ""),
            content_version(meta),
            int(meta["size"]),
        )

    def _under(self, parents: list[str], folder_id: str, ancestors: dict[str, list[str]]) -> bool:
        """Whether the parent chain reaches `folder_id` (files.get per ancestor, cached per call)."""
        pending, seen = list(parents), set[str]()
        while pending and len(seen) < MAX_ANCESTORS:
            pid = pending.pop()
            if pid == folder_id:
                return True
            if pid in seen:
                continue
            seen.add(pid)
            if pid not in ancestors:
                try:
                    meta = _execute(
                        self.service.files().get(fileId=pid, fields="id,parents", supportsAllDrives=True)
                    )
                except HttpError as exc:
                    if _status(exc) != 404:
                        raise
                    meta = {}
                ancestors[pid] = list(meta.get("parents") or [])
            pending.extend(ancestors[pid])
        return False
