"""Google Drive: watched folders fed by push notifications.

- `DriveWatcher` lets an organisation watch a folder only once it has proved it can read it
  (`drive_access`: its own OAuth grant, or an operator mapping for the deployment's account), opens
  one `changes.watch` channel per (organisation, folder) with those credentials, authenticates the
  notifications Drive POSTs to the webhook, and turns the change log into `Upsert`/`Removal`
  records. Channels last at most a week and cannot be extended: `renew` replaces those close to
  expiry.
- A watch whose access ended (grant revoked at Google, folder no longer mapped) is stopped: marked
  `revoked` with the reason, nothing more is listed for it (`WatchStopped`).
- Changes are returned after the page token has moved (compare-and-set in the `WatchStore`), so a
  caller that dies before acting on them loses them (ingest is idempotent, acting twice would be
  harmless).

Sources (`drive://`), the client, grants and watch state live in `drive_sources`, `drive_client`,
`drive_auth` and `drive_watches`; their names are re-exported here for the old import paths.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from googleapiclient.errors import HttpError

from heimdex.adapters.drive_access import (
    AccessConflict,
    AccessDenied,
    DriveAccess,
    GrantRevoked,
    Session,
)
from heimdex.adapters.drive_client import SCOPE, drive_service, execute, status_of
from heimdex.adapters.drive_sources import (
    DriveSourceStore,
    OrgDriveSources,
    content_version,
    drive_uri,
    file_id_of,
    is_video,
)
from heimdex.adapters.drive_watches import (
    Channel,
    FirestoreWatchStore,
    Watch,
    WatchStore,
    validate_folder_id,
    watch_doc_id,
)
from heimdex.config import Settings

__all__ = [
    "SCOPE",
    "AccessConflict",
    "AccessDenied",
    "Change",
    "Channel",
    "DriveAccess",
    "DriveSourceStore",
    "DriveWatcher",
    "FirestoreWatchStore",
    "GrantRevoked",
    "NotificationRefused",
    "OrgDriveSources",
    "Removal",
    "Upsert",
    "Watch",
    "WatchStopped",
    "WatchStore",
    "content_version",
    "drive_service",
    "drive_uri",
    "file_id_of",
    "is_video",
    "validate_folder_id",
    "watch_doc_id",
]

log = logging.getLogger(__name__)

RENEW_MARGIN_S = 2 * 24 * 3600.0
MAX_ANCESTORS = 100
CHANGE_FIELDS = (
    "nextPageToken,newStartPageToken,"
    "changes(changeType,fileId,removed,file(id,name,mimeType,size,version,md5Checksum,trashed,parents))"
)
DISCONNECTED = "Drive was disconnected by the organisation (DELETE /v1/drive/grant)"


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


class WatchStopped(Exception):
    """A genuine notification for a watch that may no longer read its folder: acknowledged (Drive
    must not retry it), nothing listed, no job made."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(watch.reason or "the watch is stopped")
        self.watch = watch


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DriveWatcher:
    def __init__(
        self,
        access: DriveAccess,
        store: WatchStore,
        settings: Settings,
        *,
        page_size: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access = access
        self.store = store
        self.settings = settings
        self.page_size = page_size
        self.clock = clock

    # -- channels

    def _open_channel(self, watch: Watch, session: Session, now: float) -> Channel:
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
            with self.access.guarded(session) as service:
                resp = execute(
                    service.changes().watch(
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

    def _close_channel(self, watch: Watch, channel: Channel, session: Session | None) -> None:
        """Stop a channel at Drive (with the credentials that opened it) and forget it. Without a
        session (the credentials are gone) it is only forgotten: it lapses at its expiry."""
        if channel.resource_id is not None and session is not None:
            try:
                with self.access.guarded(session) as service:
                    execute(
                        service.channels().stop(body={"id": channel.id, "resourceId": channel.resource_id})
                    )
            except HttpError as exc:
                if status_of(exc) != 404:  # already expired or stopped
                    raise
        self.store.drop_channel(watch.org_id, watch.folder_id, channel.id)

    def _session_or_none(self, watch: Watch) -> Session | None:
        """The watch's credentials while they still work (a revoked grant has none)."""
        if not watch.active or self.access.watch_problem(watch) is not None:
            return None
        try:
            return self.access.open(watch.org_id, watch.auth)
        except GrantRevoked:
            return None

    def _close_all(self, watch: Watch, session: Session | None) -> None:
        for channel in watch.channels:
            try:
                self._close_channel(watch, channel, session)
            except Exception:  # it expires on its own; its notifications are acknowledged meanwhile
                log.exception(
                    "stopping a Drive channel failed",
                    extra={"org_id": watch.org_id, "folder_id": watch.folder_id, "channel_id": channel.id},
                )

    # -- registration

    def register(self, org_id: str, folder_id: str) -> Watch:
        """Watch a folder (My Drive or a shared drive) for one organisation, once it has proved it can
        read it (AccessDenied / AccessConflict otherwise). Idempotent."""
        watch_doc_id(org_id, folder_id)
        proof = self.access.prove(org_id, folder_id)
        session = proof.session
        existing = self.store.get(org_id, folder_id)
        if existing is not None:
            if existing.active and existing.auth == session.auth:
                return existing
            # Revoked, or now proved the other way: start afresh with the credentials just proved.
            self._close_all(existing, self._session_or_none(existing))
            self.store.delete(org_id, folder_id)
        drive_id = proof.folder.get("driveId")
        with self.access.guarded(session) as service:
            start = execute(
                service.changes().getStartPageToken(
                    supportsAllDrives=True, **({"driveId": drive_id} if drive_id else {})
                )
            )
        watch = Watch(org_id, folder_id, drive_id, start["startPageToken"], auth=session.auth)
        if not self.store.create(watch):
            return self.store.get(org_id, folder_id) or watch
        try:
            self._open_channel(watch, session, self.clock())
        except Exception:
            self.store.delete(org_id, folder_id)
            raise
        log.info(
            "Drive folder watched",
            extra={"org_id": org_id, "folder_id": folder_id, "auth": session.auth},
        )
        return self.store.get(org_id, folder_id) or watch

    def unregister(self, org_id: str, folder_id: str) -> bool:
        """Stop the folder's channels and forget it; False if it was not watched."""
        watch = self.store.get(org_id, folder_id)
        if watch is None:
            return False
        session = self._session_or_none(watch)
        for channel in watch.channels:
            self._close_channel(watch, channel, session)
        self.store.delete(org_id, folder_id)
        return True

    def watches(self, org_id: str) -> list[Watch]:
        """The organisation's watches, each `revoked` with the reason once its access has ended (also
        when that is known but not yet acted on: a grant a stage found revoked)."""
        out = []
        for watch in self.store.list_for_org(org_id):
            problem = self.access.watch_problem(watch) if watch.active else None
            out.append(replace(watch, status="revoked", reason=problem) if problem else watch)
        return out

    # -- stopping

    def revoke_org(self, org_id: str, reason: str, *, close: bool) -> list[Watch]:
        """Stop every active delegated watch of the organisation: `revoked` with the reason. With
        `close`, while the grant still works (the organisation disconnects), its channels are stopped
        at Drive first; otherwise they are kept, so that Drive's late notifications are acknowledged
        as revoked, and they lapse at their expiry."""
        stopped = []
        for watch in self.store.list_for_org(org_id):
            if watch.auth != "delegated" or not watch.active:
                continue
            if close:
                self._close_all(watch, self._session_or_none(watch))
            self.store.set_status(org_id, watch.folder_id, "revoked", reason)
            stopped.append(self.store.get(org_id, watch.folder_id) or watch)
            log.warning(
                "Drive watch revoked",
                extra={"org_id": org_id, "folder_id": watch.folder_id, "reason": reason},
            )
        self.access.forget(org_id)
        return stopped

    def _stop(self, watch: Watch, reason: str) -> Watch:
        """Stop a watch whose access ended: for a delegated one, every watch of that grant."""
        if watch.auth == "delegated":
            self.revoke_org(watch.org_id, reason, close=False)
        else:  # no longer mapped: the deployment's account still works, so the channels are stopped
            try:
                session: Session | None = self.access.open(watch.org_id, "service_account")
            except Exception:
                log.exception("no Drive credentials of the deployment to stop channels with")
                session = None
            self._close_all(watch, session)
            self.store.set_status(watch.org_id, watch.folder_id, "revoked", reason)
            log.warning(
                "Drive watch stopped",
                extra={"org_id": watch.org_id, "folder_id": watch.folder_id, "reason": reason},
            )
        return self.store.get(watch.org_id, watch.folder_id) or replace(
            watch, status="revoked", reason=reason
        )

    # -- renewal

    def renew(self, now: float | None = None, margin_s: float = RENEW_MARGIN_S) -> int:
        """Replace every channel that expires within `margin_s`: open the new one, then stop the old.

        Stopped watches are left alone, and a watch whose access has ended is stopped. A watch whose
        new channel cannot be opened is logged and left for the next run; returns how many were renewed.
        """
        now = self.clock() if now is None else now
        deadline_ms = (now + margin_s) * 1000
        renewed = 0
        for watch in self.store.list_all():
            if not watch.active:
                continue
            key = {"org_id": watch.org_id, "folder_id": watch.folder_id}
            try:
                problem = self.access.watch_problem(watch)
                if problem is not None:
                    self._stop(watch, problem)
                    continue
                if watch.channels and watch.channel.expiration_ms > deadline_ms:
                    continue
                session = self.access.open(watch.org_id, watch.auth)
                new = self._open_channel(watch, session, now)
            except GrantRevoked as exc:
                self._stop(watch, exc.reason)
                continue
            except Exception:
                log.exception("opening a new Drive channel failed; the old one stays", extra=key)
                continue
            log.info("Drive channel renewed", extra={**key, "channel_id": new.id})
            for old in watch.channels:
                try:
                    self._close_channel(watch, old, session)
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
        retry those), and WatchStopped for a watch whose access has ended, which this call may be the
        one to find (answer 2xx, saying so). A "sync" message yields nothing. Only the handler that
        moves the page token returns a page; one that loses the race lists again from the new token.
        """
        watch, state = self._authenticate(headers)
        if not watch.active:
            raise WatchStopped(watch)
        problem = self.access.watch_problem(watch)
        if problem is not None:
            raise WatchStopped(self._stop(watch, problem))
        if state == "sync":
            return []
        try:
            session = self.access.open(watch.org_id, watch.auth)
            for _ in range(20):
                with self.access.guarded(session) as service:
                    changes, new_token = self._list_changes(watch, service)
                if new_token == watch.page_token:
                    return []
                if self.store.advance(watch.org_id, watch.folder_id, watch.page_token, new_token):
                    return changes
                current = self.store.get(watch.org_id, watch.folder_id)
                if current is None:
                    return []
                watch = current
        except GrantRevoked as exc:
            raise WatchStopped(self._stop(watch, exc.reason)) from exc
        raise RuntimeError(f"page token of {watch.org_id}/{watch.folder_id} kept moving; giving up")

    def _list_changes(self, watch: Watch, service: Any) -> tuple[list[Change], str]:
        found: dict[str, Change] = {}  # per file, the latest wins
        ancestors: dict[str, list[str]] = {}
        token = watch.page_token
        while True:
            resp = execute(
                service.changes().list(
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
                change = self._interpret(watch, service, fid, entry, ancestors)
                if change is None:
                    found.pop(fid, None)
                else:
                    found[fid] = change
            if "newStartPageToken" in resp:
                return list(found.values()), str(resp["newStartPageToken"])
            token = resp["nextPageToken"]

    def _interpret(
        self,
        watch: Watch,
        service: Any,
        fid: str,
        entry: Mapping[str, Any],
        ancestors: dict[str, list[str]],
    ) -> Change | None:
        meta = entry.get("file")
        if entry.get("removed") or not meta:
            return Removal(watch.org_id, drive_uri(fid))
        parents = meta.get("parents") or []
        if not is_video(meta) or not self._under(service, parents, watch.folder_id, ancestors):
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

    def _under(
        self, service: Any, parents: list[str], folder_id: str, ancestors: dict[str, list[str]]
    ) -> bool:
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
                    meta = execute(
                        service.files().get(fileId=pid, fields="id,parents", supportsAllDrives=True)
                    )
                except HttpError as exc:
                    if status_of(exc) != 404:
                        raise
                    meta = {}
                ancestors[pid] = list(meta.get("parents") or [])
            pending.extend(ancestors[pid])
        return False
