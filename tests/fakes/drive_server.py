"""A fake of the Google Drive v3 HTTP API for the official client (google-api-python-client).

It covers the calls Heimdex makes: files.get (metadata with partial responses, `alt=media` with Range
requests), changes.getStartPageToken, changes.list (paginated), changes.watch and channels.stop, in My
Drive and in shared drives. Tests change the state through Python methods; every change goes to the
change log and is pushed to every active channel's address with Drive's notification headers, one
delivery at a time in order (a "sync" message first, when a channel is opened).

Differences from Drive, on purpose: channel addresses may be plain http, nothing is authenticated, and
one change log serves every drive (page tokens are positions in it). Like Drive, items of shared drives
are invisible (404) to callers that do not pass supportsAllDrives=true, changes.list reports a file's
current state (or `removed`), and errors are JSON bodies with code, message and reason.

    drive = FakeDrive().start()
    service = drive_service(Settings(drive_api_root=drive.root_url))
    ...
    drive.stop()
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from flask import Flask, Response, jsonify, request

from tests.fakes import WsgiServer

FOLDER_MIME = "application/vnd.google-apps.folder"
MY_DRIVE_ROOT = "0AFakeMyDriveRootFolder"
MAX_CHANNEL_TTL_MS = 7 * 24 * 3600 * 1000
DEFAULT_CHANNEL_TTL_MS = 3600 * 1000
DEFAULT_PAGE_SIZE = 100
FIRST_PAGE_TOKEN = 1000


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None
    content: bytes | None = None  # None for folders
    version: int = 1
    trashed: bool = False
    modified: str = field(default_factory=_now_iso)

    def resource(self) -> dict[str, Any]:
        r: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "parents": list(self.parents),
            "trashed": self.trashed,
            "version": str(self.version),
            "modifiedTime": self.modified,
        }
        if self.drive_id:
            r["driveId"] = self.drive_id
        if self.content is not None:
            r["size"] = str(len(self.content))
            r["md5Checksum"] = hashlib.md5(self.content).hexdigest()
        return r


@dataclass
class FakeChannel:
    id: str
    token: str | None
    address: str
    resource_id: str
    expiration_ms: int
    page_token: str
    drive_id: str | None
    all_drives: bool
    active: bool = True
    messages: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def covers(self, drive_id: str | None) -> bool:
        if self.drive_id is not None:
            return drive_id == self.drive_id
        return drive_id is None or self.all_drives


@dataclass(frozen=True)
class Delivery:
    """One push notification as sent, and the status the receiver answered (0: unreachable)."""

    channel_id: str
    state: str
    headers: dict[str, str]
    status: int


@dataclass(frozen=True)
class Logged:
    seq: int
    file_id: str
    drive_id: str | None
    time: str


@dataclass(frozen=True)
class Seen:
    """A request as the fake received it."""

    method: str
    path: str
    args: dict[str, str]
    range: str | None


def parse_fields(spec: str) -> dict[str, Any]:
    """Drive's partial-response selector, e.g. `nextPageToken,changes(fileId,file(id,name))`."""
    pos = 0

    def parse() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(spec) and spec[pos] != ")":
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = [p.strip() for p in spec[start:pos].split("/") if p.strip()]
            sub = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse()
                pos += 1  # ')'
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {}) or {}
            if path:
                node[path[-1]] = sub
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
        return out

    return parse()


def select(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [select(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: select(value[k], sub) for k, sub in tree.items() if k in value}


def _flag(name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def _error(code: int, reason: str, message: str, location: str | None = None) -> tuple[Response, int]:
    err: dict[str, str] = {"domain": "global", "reason": reason, "message": message}
    if location:
        err.update(location=location, locationType="parameter")
    return jsonify({"error": {"code": code, "message": message, "errors": [err]}}), code


class FakeDrive:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.files: dict[str, FakeFile] = {}
        self.drives: dict[str, str] = {}  # shared drive id -> name
        self.log: list[Logged] = []
        self.channels: dict[str, FakeChannel] = {}
        self.stopped: list[str] = []  # channel ids, in the order channels.stop was called
        self.requests: list[Seen] = []
        self.deliveries: list[Delivery] = []
        self.files[MY_DRIVE_ROOT] = FakeFile(MY_DRIVE_ROOT, "My Drive", FOLDER_MIME, [], None)
        self._outbox: queue.Queue[tuple[str, str, dict[str, str]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._deliver_loop, name="fake-drive-push", daemon=True)
        self._server = WsgiServer(self._app())

    # ------------------------------------------------------------ lifecycle

    @property
    def root_url(self) -> str:
        return self._server.url

    def start(self) -> FakeDrive:
        self._server.start()
        self._worker.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        self._worker.join(timeout=10)
        self._server.stop()

    def drain(self) -> None:
        """Wait until every queued notification has been delivered and answered."""
        self._outbox.join()

    # ------------------------------------------------------------ state, changed by tests

    def add_shared_drive(self, name: str) -> str:
        with self._lock:
            drive_id = "0A" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
            self.drives[drive_id] = name
            self.files[drive_id] = FakeFile(drive_id, name, FOLDER_MIME, [], drive_id)
            return drive_id

    def add_folder(self, name: str, parent: str | None = None, *, wait: bool = True) -> str:
        return self._create(name, FOLDER_MIME, None, parent, wait)

    def add_file(
        self,
        name: str,
        data: bytes,
        parent: str | None = None,
        *,
        mime_type: str | None = None,
        wait: bool = True,
    ) -> str:
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._create(name, mime, data, parent, wait)

    def update_file(
        self, file_id: str, data: bytes | None = None, *, name: str | None = None, wait: bool = True
    ) -> None:
        with self._lock:
            f = self.files[file_id]
            if data is not None:
                f.content = data
            if name is not None:
                f.name = name
            self._touch(f)
        self._after(wait)

    def move(self, file_id: str, parent: str, *, wait: bool = True) -> None:
        with self._lock:
            f = self.files[file_id]
            f.parents = [parent]
            f.drive_id = self.files[parent].drive_id
            self._touch(f)
        self._after(wait)

    def trash(self, file_id: str, *, wait: bool = True) -> None:
        with self._lock:
            f = self.files[file_id]
            f.trashed = True
            self._touch(f)
        self._after(wait)

    def delete(self, file_id: str, *, wait: bool = True) -> None:
        """Permanent deletion (children of a folder too): changes.list reports `removed`."""
        with self._lock:
            for child in [f.id for f in self.files.values() if file_id in f.parents]:
                self.delete(child, wait=False)
            f = self.files.pop(file_id)
            self._record(f.id, f.drive_id)
        self._after(wait)

    def active_channels(self) -> list[FakeChannel]:
        with self._lock:
            return [c for c in self.channels.values() if c.active]

    def media_requests(self, file_id: str) -> list[Seen]:
        return [
            r for r in self.requests if r.path.endswith(f"/files/{file_id}") and r.args.get("alt") == "media"
        ]

    def _create(self, name: str, mime: str, data: bytes | None, parent: str | None, wait: bool) -> str:
        with self._lock:
            parent_id = parent or MY_DRIVE_ROOT
            drive_id = self.files[parent_id].drive_id
            fid = "1" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
            self.files[fid] = FakeFile(fid, name, mime, [parent_id], drive_id, data)
            self._record(fid, drive_id)
        self._after(wait)
        return fid

    def _touch(self, f: FakeFile) -> None:
        f.version += 1
        f.modified = _now_iso()
        self._record(f.id, f.drive_id)

    def _record(self, file_id: str, drive_id: str | None) -> None:
        self.log.append(Logged(self._next_seq(), file_id, drive_id, _now_iso()))
        now_ms = int(time.time() * 1000)
        for ch in self.channels.values():
            if ch.active and ch.expiration_ms > now_ms and ch.covers(drive_id):
                self._queue(ch, "change")

    def _after(self, wait: bool) -> None:
        if wait:
            self.drain()

    def _next_seq(self) -> int:
        return self.log[-1].seq + 1 if self.log else FIRST_PAGE_TOKEN

    def _visible(self, file_id: str) -> FakeFile | None:
        f = self.files.get(MY_DRIVE_ROOT if file_id == "root" else file_id)
        if f is None or (f.drive_id and not (_flag("supportsAllDrives") or _flag("supportsTeamDrives"))):
            return None
        return f

    # ------------------------------------------------------------ push notifications

    def _queue(self, ch: FakeChannel, state: str) -> None:
        headers = {
            "X-Goog-Channel-ID": ch.id,
            "X-Goog-Channel-Expiration": formatdate(ch.expiration_ms / 1000, usegmt=True),
            "X-Goog-Message-Number": str(next(ch.messages)),
            "X-Goog-Resource-ID": ch.resource_id,
            "X-Goog-Resource-State": state,
            "X-Goog-Resource-URI": f"{self.root_url}drive/v3/changes?alt=json&pageToken={ch.page_token}",
        }
        if ch.token is not None:
            headers["X-Goog-Channel-Token"] = ch.token
        self._outbox.put((ch.address, ch.id, headers))

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                if item is None:
                    return
                address, channel_id, headers = item
                req = urllib.request.Request(address, data=b"", method="POST", headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status = resp.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError:
                    status = 0
                self.deliveries.append(
                    Delivery(channel_id, headers["X-Goog-Resource-State"], headers, status)
                )
            finally:
                self._outbox.task_done()

    # ------------------------------------------------------------ HTTP

    def _app(self) -> Flask:
        app = Flask("fake-drive")

        @app.before_request
        def seen() -> None:
            self.requests.append(
                Seen(request.method, request.path, dict(request.args), request.headers.get("Range"))
            )

        @app.errorhandler(404)
        def not_found(_exc: Exception) -> Any:
            return _error(404, "notFound", f"Not Found: {request.path}")

        @app.get("/drive/v3/files/<file_id>")
        def files_get(file_id: str) -> Any:
            with self._lock:
                f = self._visible(file_id)
                if f is None:
                    return _error(404, "notFound", f"File not found: {file_id}.", "fileId")
                if request.args.get("alt") == "media":
                    return self._media(f)
                fields = request.args.get("fields") or "kind,id,name,mimeType"
                return jsonify(select(f.resource(), parse_fields(fields)))

        @app.get("/drive/v3/changes/startPageToken")
        def start_page_token() -> Any:
            with self._lock:
                drive_id = request.args.get("driveId")
                if drive_id and (drive_id not in self.drives or not _flag("supportsAllDrives")):
                    return _error(404, "notFound", f"Shared drive not found: {drive_id}", "driveId")
                return jsonify({"kind": "drive#startPageToken", "startPageToken": str(self._next_seq())})

        @app.get("/drive/v3/changes")
        def changes_list() -> Any:
            with self._lock:
                token = request.args.get("pageToken", "")
                if not token.isdigit():
                    return _error(400, "invalid", f"Invalid Value: pageToken {token!r}", "pageToken")
                drive_id = request.args.get("driveId")
                if drive_id and (drive_id not in self.drives or not _flag("supportsAllDrives")):
                    return _error(404, "notFound", f"Shared drive not found: {drive_id}", "driveId")
                size = int(request.args.get("pageSize", DEFAULT_PAGE_SIZE))
                if not 1 <= size <= 1000:
                    return _error(400, "invalid", f"Invalid Value: pageSize {size}", "pageSize")
                all_drives = _flag("includeItemsFromAllDrives") and _flag("supportsAllDrives")
                entries = [
                    e
                    for e in self.log
                    if e.seq >= int(token)
                    and (e.drive_id == drive_id if drive_id else (e.drive_id is None or all_drives))
                ]
                body: dict[str, Any] = {
                    "kind": "drive#changeList",
                    "changes": [self._change(e) for e in entries[:size]],
                }
                if len(entries) > size:
                    body["nextPageToken"] = str(entries[size].seq)
                else:
                    body["newStartPageToken"] = str(self._next_seq())
                return jsonify(
                    select(body, parse_fields(request.args["fields"])) if request.args.get("fields") else body
                )

        @app.post("/drive/v3/changes/watch")
        def changes_watch() -> Any:
            with self._lock:
                token = request.args.get("pageToken", "")
                if not token.isdigit():
                    return _error(400, "required", "Required parameter: pageToken", "pageToken")
                body = request.get_json(force=True, silent=True) or {}
                if (
                    not body.get("id")
                    or body.get("type") not in ("web_hook", "webhook")
                    or not body.get("address")
                ):
                    return _error(400, "invalid", "A channel needs id, type web_hook and address")
                if body["id"] in self.channels:
                    return _error(400, "channelIdNotUnique", f"Channel id {body['id']} not unique")
                now_ms = int(time.time() * 1000)
                expiration = int(body.get("expiration") or now_ms + DEFAULT_CHANNEL_TTL_MS)
                ch = FakeChannel(
                    id=body["id"],
                    token=body.get("token"),
                    address=body["address"],
                    resource_id=secrets.token_urlsafe(20),
                    expiration_ms=min(expiration, now_ms + MAX_CHANNEL_TTL_MS),
                    page_token=token,
                    drive_id=request.args.get("driveId"),
                    all_drives=_flag("includeItemsFromAllDrives") and _flag("supportsAllDrives"),
                )
                self.channels[ch.id] = ch
                self._queue(ch, "sync")
                resource: dict[str, Any] = {
                    "kind": "api#channel",
                    "id": ch.id,
                    "resourceId": ch.resource_id,
                    "resourceUri": f"{self.root_url}drive/v3/changes?alt=json&pageToken={token}",
                    "expiration": str(ch.expiration_ms),
                }
                if ch.token is not None:
                    resource["token"] = ch.token
                return jsonify(resource)

        @app.post("/drive/v3/channels/stop")
        def channels_stop() -> Any:
            with self._lock:
                body = request.get_json(force=True, silent=True) or {}
                ch = self.channels.get(body.get("id", ""))
                if ch is None or not ch.active or ch.resource_id != body.get("resourceId"):
                    return _error(404, "notFound", f"Channel '{body.get('id')}' not found for project")
                ch.active = False
                self.stopped.append(ch.id)
                return Response(status=204)

        return app

    def _change(self, e: Logged) -> dict[str, Any]:
        f = self.files.get(e.file_id)
        change: dict[str, Any] = {
            "kind": "drive#change",
            "changeType": "file",
            "time": e.time,
            "fileId": e.file_id,
            "removed": f is None,
        }
        if f is not None:
            change["file"] = f.resource()
        return change

    def _media(self, f: FakeFile) -> Any:
        if f.content is None:
            return _error(
                403,
                "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
            )
        data, total = f.content, len(f.content)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", (request.headers.get("Range") or "").strip())
        if m is None:
            return Response(data, 200, mimetype=f.mime_type)
        start = int(m[1])
        end = min(int(m[2]) if m[2] else total - 1, total - 1)
        if start >= total:
            return Response(b"", 416, headers={"Content-Range": f"bytes */{total}"})
        return Response(
            data[start : end + 1],
            206,
            mimetype=f.mime_type,
            headers={"Content-Range": f"bytes {start}-{end}/{total}"},
        )
