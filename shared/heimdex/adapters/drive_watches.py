"""Watched Drive folders: who watches what, with which credentials, through which channels.

A watch is (organisation, folder). `auth` says whose credentials its Drive calls use: `delegated`
(the organisation's own OAuth grant) or `service_account` (the deployment's account, only for a
folder the operator mapped to that organisation). A watch whose access ended (grant revoked, folder
no longer mapped) stays, `revoked` with the reason, until the organisation deletes it or registers
the folder again; its channels are kept so that Drive's late notifications are acknowledged.

The page token only moves forward by compare-and-set in a transaction, so a repeated or concurrent
notification never yields the same change twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from heimdex.domain import validate_folder_id, validate_org

Auth = Literal["delegated", "service_account"]
WatchStatus = Literal["active", "revoked"]


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
    auth: Auth = "delegated"
    status: WatchStatus = "active"
    reason: str | None = None

    @property
    def channel(self) -> Channel:
        return self.channels[-1]

    @property
    def active(self) -> bool:
        return self.status == "active"

    def find_channel(self, channel_id: str) -> Channel | None:
        return next((c for c in self.channels if c.id == channel_id), None)

    def public(self) -> dict[str, Any]:
        """What the organisation sees of its watch (GET /v1/watches)."""
        return {
            "org_id": self.org_id,
            "folder_id": self.folder_id,
            "drive_id": self.drive_id,
            "auth": self.auth,
            "status": self.status,
            "reason": self.reason,
            "channel_expires_ms": self.channel.expiration_ms if self.channels else None,
        }


class WatchStore(Protocol):
    def create(self, watch: Watch) -> bool:
        """Store a new watch; False (and nothing written) when (org, folder) already has one."""
        ...

    def get(self, org_id: str, folder_id: str) -> Watch | None: ...
    def find_by_channel(self, channel_id: str) -> Watch | None: ...
    def list_all(self) -> list[Watch]: ...
    def list_for_org(self, org_id: str) -> list[Watch]: ...
    def delete(self, org_id: str, folder_id: str) -> None: ...

    def put_channel(self, org_id: str, folder_id: str, channel: Channel) -> None:
        """Replace the channel with the same id, or append it as the current one."""
        ...

    def drop_channel(self, org_id: str, folder_id: str, channel_id: str) -> None: ...

    def advance(self, org_id: str, folder_id: str, from_token: str, to_token: str) -> bool:
        """Compare-and-set the page token: True if it was `from_token` and is now `to_token`."""
        ...

    def set_status(self, org_id: str, folder_id: str, status: WatchStatus, reason: str | None) -> bool:
        """Change an existing watch's status; False if there is no such watch."""
        ...


def watch_doc_id(org_id: str, folder_id: str) -> str:
    validate_org(org_id)  # no ':' in either part, so the id is unambiguous
    validate_folder_id(folder_id)
    return f"{org_id}:{folder_id}"


def _channel_to_doc(c: Channel) -> dict[str, Any]:
    return {
        "id": c.id,
        "token_sha256": c.token_sha256,
        "expiration_ms": c.expiration_ms,
        "resource_id": c.resource_id,
    }


def _watch_from_doc(doc: Mapping[str, Any]) -> Watch:
    # Watches stored before organisations had to prove access carry no `auth`: they were read with the
    # deployment's account, so they count as service_account watches and keep working only for a
    # folder the operator maps to their organisation.
    return Watch(
        org_id=doc["org_id"],
        folder_id=doc["folder_id"],
        drive_id=doc.get("drive_id"),
        page_token=doc["page_token"],
        channels=tuple(
            Channel(c["id"], c["token_sha256"], int(c["expiration_ms"]), c.get("resource_id"))
            for c in doc.get("channels", [])
        ),
        auth="delegated" if doc.get("auth") == "delegated" else "service_account",
        status="revoked" if doc.get("status") == "revoked" else "active",
        reason=doc.get("reason"),
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
                    "auth": watch.auth,
                    "status": watch.status,
                    "reason": watch.reason,
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

    def list_for_org(self, org_id: str) -> list[Watch]:
        query = self.watches.where(filter=FieldFilter("org_id", "==", validate_org(org_id)))
        return sorted((_watch_from_doc(s.to_dict() or {}) for s in query.stream()), key=lambda w: w.folder_id)

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

    def set_status(self, org_id: str, folder_id: str, status: WatchStatus, reason: str | None) -> bool:
        ref = self._ref(org_id, folder_id)

        def txn(tx: Any) -> bool:
            if not ref.get(transaction=tx).exists:
                return False
            tx.update(ref, {"status": status, "reason": reason, "updated_at": datetime.now(UTC)})
            return True

        changed: bool = self._transact(txn)
        return changed
