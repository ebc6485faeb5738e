"""A fake of the Google Drive v3 HTTP API and of Google's OAuth 2.0 endpoints, for the official
clients (google-api-python-client, google-auth).

Drive: the calls Heimdex makes: files.get (metadata with partial responses, `alt=media` with Range
requests), changes.getStartPageToken, changes.list (paginated), changes.watch and channels.stop, in My
Drive and in shared drives. Tests change the state through Python methods; every change goes to the
change log and is pushed to the address of every active channel whose owner can see the file, with
Drive's notification headers, one delivery at a time in order (a "sync" message first, when a
channel is opened).

Access: every Drive call needs `Authorization: Bearer <access token>` (401 otherwise, which makes
google-auth refresh). A token belongs to a principal (a user's e-mail, or a service account's);
a principal reads what is shared with it (`share`, `add_shared_drive(members=...)`) and everything
below that, and nothing else: other files are 404, as on Drive, and changes.list reports only changes
the principal could see (a file it lost access to reads as `removed`).

OAuth 2.0 (Google's wire protocol): the authorization endpoint (`/o/oauth2/v2/auth`; the signed-in
browser user is the `X-Fake-User` header, `X-Fake-Consent: deny` declines), the token endpoint
(`/token`: authorization_code, refresh_token, and the service-account JWT bearer grant that
google-auth's `service_account.Credentials` sends) and the revoke endpoint (`/revoke`). Tests can
expire access tokens (`expire_access_tokens`) and revoke a user's grant as if done in their Google
account (`revoke_user`): the next refresh is answered `invalid_grant`.

Differences from Drive, on purpose: channel addresses may be plain http, and one change log serves
every drive (page tokens are positions in it). Like Drive, items of shared drives are invisible (404)
to callers that do not pass supportsAllDrives=true, changes.list reports a file's current state (or
`removed`), and errors are JSON bodies with code, message and reason.

    drive = FakeDrive().start()
    client = drive.register_client()
    settings = Settings(**drive.settings(client))
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
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, g, jsonify, redirect, request

from tests.fakes import WsgiServer

FOLDER_MIME = "application/vnd.google-apps.folder"
MY_DRIVE_ROOT = "0AFakeMyDriveRootFolder"
MAX_CHANNEL_TTL_MS = 7 * 24 * 3600 * 1000
DEFAULT_CHANNEL_TTL_MS = 3600 * 1000
DEFAULT_PAGE_SIZE = 100
FIRST_PAGE_TOKEN = 1000
READ_SCOPES = {"https://www.googleapis.com/auth/drive.readonly", "https://www.googleapis.com/auth/drive"}
ACCESS_TOKEN_TTL_S = 3600
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SERVICE_ACCOUNT = "heimdex-drive@heimdex-test.iam.gserviceaccount.com"


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
    readers: set[str] = field(default_factory=set)  # principals it is shared with (and its contents)
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
    principal: str  # whose change log it watches; only they may stop it
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
    body: str = ""


@dataclass(frozen=True)
class Logged:
    seq: int
    file_id: str
    drive_id: str | None
    time: str
    seen_by: frozenset[str]  # principals who could see the file before or after the change


@dataclass(frozen=True)
class Seen:
    """A request as the fake received it."""

    method: str
    path: str
    args: dict[str, str]
    range: str | None
    principal: str | None = None  # whose access token it carried (Drive calls)


@dataclass
class FakeClient:
    """An OAuth 2.0 web client registered with the fake."""

    id: str
    secret: str
    redirect_uris: list[str]


@dataclass
class FakeGrant:
    """A user's offline consent to a client: its refresh token."""

    refresh_token: str
    principal: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class FakeToken:
    principal: str
    scope: str
    expires_at: float
    refresh_token: str | None  # None: a service account's


@dataclass(frozen=True)
class TokenRequest:
    """A call of the token endpoint: the grant type, whose, and the status answered."""

    grant_type: str
    principal: str | None
    status: int


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


def _oauth_error(status: int, error: str, description: str) -> tuple[Response, int]:
    return jsonify({"error": error, "error_description": description}), status


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


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
        # OAuth 2.0
        self.clients: dict[str, FakeClient] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.grants: dict[str, FakeGrant] = {}  # refresh token -> grant
        self.tokens: dict[str, FakeToken] = {}  # access token -> holder
        self.service_accounts: dict[str, bytes] = {}  # e-mail -> public key (PEM)
        self.token_requests: list[TokenRequest] = []
        self.revocations: list[str] = []  # tokens POSTed to the revoke endpoint
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

    @property
    def auth_uri(self) -> str:
        return self.root_url + "o/oauth2/v2/auth"

    @property
    def token_uri(self) -> str:
        return self.root_url + "token"

    @property
    def revoke_uri(self) -> str:
        return self.root_url + "revoke"

    # ------------------------------------------------------------ OAuth, changed by tests

    def register_client(
        self, redirect_uris: Iterable[str] = (), *, client_id: str | None = None
    ) -> FakeClient:
        with self._lock:
            cid = client_id or f"{secrets.randbelow(10**12)}-fake.apps.googleusercontent.com"
            client = FakeClient(cid, _new_token("GOCSPX-"), list(redirect_uris))
            self.clients[cid] = client
            return client

    def allow_redirect(self, client_id: str, uri: str) -> None:
        with self._lock:
            self.clients[client_id].redirect_uris.append(uri)

    def settings(self, client: FakeClient) -> dict[str, Any]:
        """Settings fields that point Heimdex at this fake, with `client` as its OAuth client."""
        return {
            "drive_api_root": self.root_url,
            "drive_oauth_auth_uri": self.auth_uri,
            "drive_oauth_token_uri": self.token_uri,
            "drive_oauth_revoke_uri": self.revoke_uri,
            "drive_oauth_client_id": client.id,
            "drive_oauth_client_secret": client.secret,
        }

    def service_account(self, email: str = SERVICE_ACCOUNT) -> dict[str, Any]:
        """A service-account key (the JSON a key file holds) whose token_uri is this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with self._lock:
            self.service_accounts[email] = public
        return {
            "type": "service_account",
            "project_id": "heimdex-test",
            "private_key_id": secrets.token_hex(20),
            "private_key": private,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "token_uri": self.token_uri,
        }

    def offline_grant(self, principal: str, client: FakeClient, scope: str = next(iter(READ_SCOPES))) -> str:
        """A refresh token, as if `principal` had consented to `client` (no browser)."""
        with self._lock:
            refresh = _new_token("1//fake-refresh-")
            self.grants[refresh] = FakeGrant(refresh, principal, client.id, scope)
            return refresh

    def expire_access_tokens(self, principal: str | None = None) -> int:
        """Expire access tokens now (all, or one principal's): the next call with one gets 401."""
        with self._lock:
            now = time.time()
            hit = [t for t in self.tokens.values() if principal in (None, t.principal)]
            for t in hit:
                t.expires_at = now - 1
            return len(hit)

    def revoke_user(self, principal: str) -> None:
        """The user removes the app's access in their Google account: every grant of theirs is
        revoked and their access tokens stop working."""
        with self._lock:
            for grant in self.grants.values():
                if grant.principal == principal:
                    grant.revoked = True
            for token, holder in list(self.tokens.items()):
                if holder.principal == principal and holder.refresh_token is not None:
                    del self.tokens[token]

    def _issue(self, principal: str, scope: str, refresh: str | None) -> dict[str, Any]:
        access = _new_token("ya29.fake-")
        self.tokens[access] = FakeToken(principal, scope, time.time() + ACCESS_TOKEN_TTL_S, refresh)
        return {
            "access_token": access,
            "expires_in": ACCESS_TOKEN_TTL_S,
            "scope": scope,
            "token_type": "Bearer",
        }

    # ------------------------------------------------------------ state, changed by tests

    def add_shared_drive(self, name: str, members: Iterable[str] = ()) -> str:
        with self._lock:
            drive_id = "0A" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
            self.drives[drive_id] = name
            self.files[drive_id] = FakeFile(drive_id, name, FOLDER_MIME, [], drive_id, readers=set(members))
            return drive_id

    def share(self, file_id: str, *principals: str, wait: bool = True) -> None:
        """Share a file or folder (and so everything below it) with principals, read-only."""
        with self._lock:
            f = self.files[file_id]
            f.readers.update(principals)
            self._record(f.id, f.drive_id, self.readers_of(f))
        self._after(wait)

    def readers_of(self, f: FakeFile) -> set[str]:
        """Who can read `f`: whoever it, or a folder above it, is shared with."""
        return {p for item in self._chain(f) for p in item.readers}

    def _chain(self, f: FakeFile) -> Iterator[FakeFile]:
        pending, seen = [f], set[str]()
        while pending:
            item = pending.pop()
            if item.id in seen:
                continue
            seen.add(item.id)
            yield item
            pending.extend(self.files[p] for p in item.parents if p in self.files)

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
            before = self.readers_of(f)
            f.parents = [parent]
            f.drive_id = self.files[parent].drive_id
            self._touch(f, before)
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
            seen_by = self.readers_of(self.files[file_id])
            f = self.files.pop(file_id)
            self._record(f.id, f.drive_id, seen_by)
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
            self._record(fid, drive_id, self.readers_of(self.files[fid]))
        self._after(wait)
        return fid

    def _touch(self, f: FakeFile, before: set[str] | None = None) -> None:
        f.version += 1
        f.modified = _now_iso()
        self._record(f.id, f.drive_id, self.readers_of(f) | (before or set()))

    def _record(self, file_id: str, drive_id: str | None, seen_by: set[str]) -> None:
        self.log.append(Logged(self._next_seq(), file_id, drive_id, _now_iso(), frozenset(seen_by)))
        now_ms = int(time.time() * 1000)
        for ch in self.channels.values():
            if ch.active and ch.expiration_ms > now_ms and ch.covers(drive_id) and ch.principal in seen_by:
                self._queue(ch, "change")

    def _after(self, wait: bool) -> None:
        if wait:
            self.drain()

    def _next_seq(self) -> int:
        return self.log[-1].seq + 1 if self.log else FIRST_PAGE_TOKEN

    def _visible(self, file_id: str) -> FakeFile | None:
        """The file, if the caller may see it (request context)."""
        f = self.files.get(MY_DRIVE_ROOT if file_id == "root" else file_id)
        if f is None or (f.drive_id and not (_flag("supportsAllDrives") or _flag("supportsTeamDrives"))):
            return None
        return f if g.principal in self.readers_of(f) else None

    def _drive_visible(self, drive_id: str) -> bool:
        root = self.files.get(drive_id)
        return (
            drive_id in self.drives
            and _flag("supportsAllDrives")
            and root is not None
            and g.principal in self.readers_of(root)
        )

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
                body = ""
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status = resp.status
                        body = resp.read(4096).decode(errors="replace")
                except urllib.error.HTTPError as exc:
                    status = exc.code
                    body = exc.read(4096).decode(errors="replace")
                except OSError:
                    status = 0
                self.deliveries.append(
                    Delivery(channel_id, headers["X-Goog-Resource-State"], headers, status, body)
                )
            finally:
                self._outbox.task_done()

    # ------------------------------------------------------------ HTTP

    def _app(self) -> Flask:
        app = Flask("fake-drive")

        @app.before_request
        def seen() -> Any:
            g.principal = None
            if request.path.startswith("/drive/"):
                refused = self._authenticate()
                if refused is not None:
                    return refused
            self.requests.append(
                Seen(
                    request.method,
                    request.path,
                    dict(request.args),
                    request.headers.get("Range"),
                    g.principal,
                )
            )
            return None

        self._oauth_routes(app)

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
                if drive_id and not self._drive_visible(drive_id):
                    return _error(404, "notFound", f"Shared drive not found: {drive_id}", "driveId")
                return jsonify({"kind": "drive#startPageToken", "startPageToken": str(self._next_seq())})

        @app.get("/drive/v3/changes")
        def changes_list() -> Any:
            with self._lock:
                token = request.args.get("pageToken", "")
                if not token.isdigit():
                    return _error(400, "invalid", f"Invalid Value: pageToken {token!r}", "pageToken")
                drive_id = request.args.get("driveId")
                if drive_id and not self._drive_visible(drive_id):
                    return _error(404, "notFound", f"Shared drive not found: {drive_id}", "driveId")
                size = int(request.args.get("pageSize", DEFAULT_PAGE_SIZE))
                if not 1 <= size <= 1000:
                    return _error(400, "invalid", f"Invalid Value: pageSize {size}", "pageSize")
                all_drives = _flag("includeItemsFromAllDrives") and _flag("supportsAllDrives")
                entries = [
                    e
                    for e in self.log
                    if e.seq >= int(token)
                    and g.principal in e.seen_by
                    and (e.drive_id == drive_id if drive_id else (e.drive_id is None or all_drives))
                ]
                body: dict[str, Any] = {
                    "kind": "drive#changeList",
                    "changes": [self._change(e, g.principal) for e in entries[:size]],
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
                    principal=g.principal,
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
                if (
                    ch is None
                    or not ch.active
                    or ch.resource_id != body.get("resourceId")
                    or ch.principal != g.principal
                ):
                    return _error(404, "notFound", f"Channel '{body.get('id')}' not found for project")
                ch.active = False
                self.stopped.append(ch.id)
                return Response(status=204)

        return app

    def _change(self, e: Logged, principal: str) -> dict[str, Any]:
        f = self.files.get(e.file_id)
        if f is not None and principal not in self.readers_of(f):
            f = None  # access lost: Drive reports it removed from this user's view
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

    # ------------------------------------------------------------ OAuth 2.0 over HTTP

    def _authenticate(self) -> Any:
        """Drive calls: a valid, unexpired access token with a Drive read scope (request context)."""
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        with self._lock:
            holder = self.tokens.get(token)
            if holder is None or holder.expires_at <= time.time():
                message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
                resp, code = _error(401, "authError", message)
                resp.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
                return resp, code
            if not READ_SCOPES & set(holder.scope.split()):
                return _error(403, "insufficientPermissions", "Insufficient Permission")
            g.principal = holder.principal
        return None

    def _client(self) -> FakeClient | None:
        """The client authenticated by client_id + client_secret (form fields or HTTP Basic)."""
        cid, secret = request.form.get("client_id"), request.form.get("client_secret")
        basic = request.authorization
        if basic is not None and basic.type == "basic":
            cid, secret = basic.username, basic.password
        client = self.clients.get(cid or "")
        return client if client is not None and secret == client.secret else None

    def _oauth_routes(self, app: Flask) -> None:
        @app.get("/o/oauth2/v2/auth")
        def authorize() -> Any:
            args = request.args
            client = self.clients.get(args.get("client_id", ""))
            if client is None:
                return Response("Error 401: invalid_client", 401, mimetype="text/plain")
            redirect_uri = args.get("redirect_uri", "")
            if redirect_uri not in client.redirect_uris:
                return Response("Error 400: redirect_uri_mismatch", 400, mimetype="text/plain")
            scopes = set(args.get("scope", "").split())
            if args.get("response_type") != "code" or not scopes:
                return Response("Error 400: invalid_request", 400, mimetype="text/plain")
            user = request.headers.get("X-Fake-User")
            if not user:
                return Response("Sign in to continue", 401, mimetype="text/plain")
            state = args.get("state")
            if request.headers.get("X-Fake-Consent") == "deny":
                reply = {"error": "access_denied", **({"state": state} if state else {})}
                return redirect(f"{redirect_uri}?{urllib.parse.urlencode(reply)}")
            code = _new_token("4/fake-code-")
            with self._lock:
                self.codes[code] = {
                    "client_id": client.id,
                    "principal": user,
                    "redirect_uri": redirect_uri,
                    "scope": " ".join(sorted(scopes)),
                    "offline": args.get("access_type") == "offline",
                }
            reply = {"code": code, "scope": " ".join(sorted(scopes)), **({"state": state} if state else {})}
            return redirect(f"{redirect_uri}?{urllib.parse.urlencode(reply)}")

        @app.post("/token")
        def token() -> Any:
            grant_type = request.form.get("grant_type", "")
            principal: str | None = None
            with self._lock:
                resp, status, principal = self._token(grant_type)
                self.token_requests.append(TokenRequest(grant_type, principal, status))
            return resp, status

        @app.post("/revoke")
        def revoke() -> Any:
            token = request.form.get("token") or request.args.get("token") or ""
            with self._lock:
                self.revocations.append(token)
                grant = self.grants.get(token)
                holder = self.tokens.pop(token, None)
                if grant is None and holder is not None and holder.refresh_token:
                    grant = self.grants.get(holder.refresh_token)
                if grant is None or grant.revoked:
                    return _oauth_error(400, "invalid_token", "Token expired or revoked")
                grant.revoked = True
                for t, h in list(self.tokens.items()):
                    if h.refresh_token == grant.refresh_token:
                        del self.tokens[t]
            return jsonify({})

    def _token(self, grant_type: str) -> tuple[Response, int, str | None]:
        """The token endpoint's answer (under the lock): response, status, and whose token it is."""
        if grant_type == JWT_BEARER:
            return self._jwt_grant()
        client = self._client()
        if client is None:
            resp, status = _oauth_error(401, "invalid_client", "The OAuth client was not found.")
            return resp, status, None
        if grant_type == "authorization_code":
            code = self.codes.pop(request.form.get("code", ""), None)
            if code is None or code["client_id"] != client.id:
                return (*_oauth_error(400, "invalid_grant", "Malformed auth code."), None)
            if code["redirect_uri"] != request.form.get("redirect_uri"):
                return (*_oauth_error(400, "redirect_uri_mismatch", "Bad Request"), code["principal"])
            refresh = None
            if code["offline"]:
                refresh = _new_token("1//fake-refresh-")
                self.grants[refresh] = FakeGrant(refresh, code["principal"], client.id, code["scope"])
            body = self._issue(code["principal"], code["scope"], refresh)
            if refresh:
                body["refresh_token"] = refresh
            return jsonify(body), 200, code["principal"]
        if grant_type == "refresh_token":
            grant = self.grants.get(request.form.get("refresh_token", ""))
            if grant is None or grant.client_id != client.id:
                return (*_oauth_error(400, "invalid_grant", "Bad Request"), None)
            if grant.revoked:
                return (
                    *_oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
                    grant.principal,
                )
            return (
                jsonify(self._issue(grant.principal, grant.scope, grant.refresh_token)),
                200,
                grant.principal,
            )
        return (*_oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}"), None)

    def _jwt_grant(self) -> tuple[Response, int, str | None]:
        """A service account's signed assertion (RFC 7523), as google-auth sends it."""
        from google.auth import jwt

        assertion = request.form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, verify=False)
            public = self.service_accounts[claims["iss"]]
            # google-auth addresses the assertion to Google's token endpoint whatever token_uri is.
            claims = jwt.decode(assertion, certs=public, audience=[GOOGLE_TOKEN_URI, self.token_uri])
        except Exception:
            return (*_oauth_error(400, "invalid_grant", "Invalid JWT Signature."), None)
        scope = str(claims.get("scope") or "")
        return jsonify(self._issue(claims["iss"], scope, None)), 200, claims["iss"]

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
