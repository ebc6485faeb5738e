"""Drive adapter against a fake Drive v3 server (official client, real HTTP, real push notifications
to a local webhook) and Google's Firestore emulator for the watch state. The organisation reads Drive
with its own grant (a refresh token of the user whose My Drive it is); who may watch what, consent,
refresh and revocation are in test_drive_ownership.py."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from heimdex.adapters.drive import (
    SCOPE,
    Change,
    DriveAccess,
    DriveSourceStore,
    DriveWatcher,
    FirestoreWatchStore,
    NotificationRefused,
    Removal,
    Upsert,
    WatchStopped,
    content_version,
    drive_service,
)
from heimdex.adapters.drive_auth import FirestoreGrantStore, Grant, TokenCipher, new_key
from heimdex.config import Settings
from heimdex.domain import MediaError
from tests.fakes import WsgiServer
from tests.fakes.drive_server import MY_DRIVE_ROOT, Delivery, FakeClient, FakeDrive

ORG = "acme"
USER = "archivist@acme.example"  # the user of ORG who connected Drive; My Drive is theirs
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    fake.share(MY_DRIVE_ROOT, USER)
    yield fake
    fake.stop()


@pytest.fixture
def client(drive: FakeDrive) -> FakeClient:
    return drive.register_client()


class Webhook:
    """The receiving end of Drive's push notifications, as the Cloud Function will be."""

    def __init__(self) -> None:
        self.watcher: DriveWatcher | None = None
        self.changes: list[Change] = []
        self.paused = False
        self._lock = threading.Lock()
        app = Flask("webhook")

        @app.post("/drive/notify")
        def notify() -> Response:
            if self.paused or self.watcher is None:
                return Response(status=503)
            try:
                changes = self.watcher.handle_notification(request.headers)
            except NotificationRefused:
                return Response(status=403)
            except WatchStopped:
                return Response(status=200)
            with self._lock:
                self.changes.extend(changes)
            return Response(status=200)

        self.server = WsgiServer(app).start()
        self.url = self.server.url + "drive/notify"

    def take(self) -> list[Change]:
        with self._lock:
            out, self.changes = self.changes, []
        return out

    def post(self, headers: dict[str, str]) -> int:
        """Deliver a notification by hand (a replay, or a forged one)."""
        req = urllib.request.Request(self.url, data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.stop()


@pytest.fixture
def settings(drive: FakeDrive, webhook: Webhook, client: FakeClient) -> Settings:
    return Settings(
        project="heimdex-test",
        drive_webhook_url=webhook.url,
        watches_collection=f"watches-{uuid.uuid4().hex[:12]}",
        drive_grants_collection=f"grants-{uuid.uuid4().hex[:12]}",
        drive_token_key=new_key(),
        **drive.settings(client),
    )


@pytest.fixture
def store(firestore_client: firestore.Client, settings: Settings) -> FirestoreWatchStore:
    return FirestoreWatchStore(firestore_client, settings.watches_collection)


@pytest.fixture
def access(
    firestore_client: firestore.Client, settings: Settings, drive: FakeDrive, client: FakeClient
) -> DriveAccess:
    grants = FirestoreGrantStore(
        firestore_client, settings.drive_grants_collection, TokenCipher.from_settings(settings)
    )
    grants.put(Grant.new(ORG, drive.offline_grant(USER, client), SCOPE))
    return DriveAccess(settings, grants)


def make_watcher(
    access: DriveAccess, store: FirestoreWatchStore, webhook: Webhook, settings: Settings, **kw: Any
) -> DriveWatcher:
    watcher = DriveWatcher(access, store, settings, **kw)
    webhook.watcher = watcher
    return watcher


@pytest.fixture
def watcher(
    access: DriveAccess, settings: Settings, store: FirestoreWatchStore, webhook: Webhook
) -> DriveWatcher:
    return make_watcher(access, store, webhook, settings)


def org_service(access: DriveAccess) -> Any:
    return access.open(ORG, "delegated").service


def upsert(drive: FakeDrive, file_id: str) -> Upsert:
    f = drive.files[file_id]
    assert f.content is not None
    return Upsert(ORG, f"drive://{file_id}", f.name, content_version(f.resource()), len(f.content))


def last_delivery(drive: FakeDrive, state: str = "change") -> Delivery:
    return [d for d in drive.deliveries if d.state == state][-1]


def test_register_opens_a_channel_and_sync_yields_nothing(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook, store: FirestoreWatchStore
) -> None:
    folder = drive.add_folder("Archive")
    watch = watcher.register(ORG, folder)
    drive.drain()

    [channel] = drive.active_channels()
    assert channel.address == webhook.url and channel.principal == USER
    assert watch.auth == "delegated" and watch.status == "active"
    assert watch.drive_id is None and watch.channel.id == channel.id
    assert watch.channel.resource_id == channel.resource_id
    assert watch.channel.expiration_ms == channel.expiration_ms > time.time() * 1000 + 5 * 86400 * 1000
    [sync] = drive.deliveries
    assert sync.state == "sync" and sync.status == 200
    assert webhook.take() == []
    assert watcher.handle_notification(sync.headers) == []
    # Registering again changes nothing; a non-folder cannot be watched.
    assert watcher.register(ORG, folder) == store.get(ORG, folder)
    assert len(drive.active_channels()) == 1
    video = drive.add_file("x.mp4", VIDEO, folder)
    webhook.take()
    with pytest.raises(ValueError, match="not a folder"):
        watcher.register(ORG, video)


def test_videos_under_the_folder_become_upserts(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook
) -> None:
    folder = drive.add_folder("Archive")
    watcher.register(ORG, folder)
    nested = drive.add_folder("2024", drive.add_folder("interviews", folder))

    a = drive.add_file("harbour.mp4", VIDEO, folder)
    assert webhook.take() == [upsert(drive, a)]
    b = drive.add_file("deep.mov", VIDEO + b"b", nested)
    assert webhook.take() == [upsert(drive, b)]
    c = drive.add_file("camera.MTS", VIDEO + b"c", nested, mime_type="application/octet-stream")
    assert webhook.take() == [upsert(drive, c)]  # by extension

    drive.add_file("notes.txt", b"not a video", folder)
    drive.add_file("poster.jpg", b"\xff\xd8", nested)
    elsewhere = drive.add_file("elsewhere.mp4", VIDEO + b"e", drive.add_folder("Other"))
    drive.add_file("root.mp4", VIDEO + b"r")
    assert webhook.take() == []

    drive.move(elsewhere, nested)
    assert webhook.take() == [upsert(drive, elsewhere)]
    drive.update_file(a, VIDEO + b"new cut")
    [changed] = webhook.take()
    assert changed == upsert(drive, a) and changed.version != upsert(drive, b).version
    assert all(d.status == 200 for d in drive.deliveries)


def test_shared_drive_folder(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook, access: DriveAccess
) -> None:
    shared = drive.add_shared_drive("Newsroom", members=[USER])
    folder = drive.add_folder("Footage", shared)
    watch = watcher.register(ORG, folder)
    assert watch.drive_id == shared
    assert drive.active_channels()[0].drive_id == shared

    v = drive.add_file("raw.mp4", VIDEO, drive.add_folder("day1", folder))
    assert webhook.take() == [upsert(drive, v)]
    drive.add_file("other.mp4", VIDEO, shared)  # same shared drive, outside the folder
    drive.add_file("mine.mp4", VIDEO)  # My Drive: another change log
    assert webhook.take() == []
    listed = [r for r in drive.requests if r.path == "/drive/v3/changes"]
    assert listed and all(r.args.get("driveId") == shared for r in listed)

    src = DriveSourceStore(org_service(access))
    with src.local_path(f"drive://{v}") as path:
        assert path.read_bytes() == VIDEO


def test_trashed_and_deleted_files_become_removals(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook
) -> None:
    folder = drive.add_folder("Archive")
    watcher.register(ORG, folder)
    sub = drive.add_folder("sub", folder)
    a = drive.add_file("a.mp4", VIDEO, folder)
    b = drive.add_file("b.mp4", VIDEO, sub)
    assert webhook.take() == [upsert(drive, a), upsert(drive, b)]

    drive.trash(a)
    assert webhook.take() == [Removal(ORG, f"drive://{a}")]
    drive.delete(b)
    assert webhook.take() == [Removal(ORG, f"drive://{b}")]
    drive.delete(sub)  # an empty folder: a removal of an id the index never had, harmless
    assert webhook.take() == [Removal(ORG, f"drive://{sub}")]


def test_refused_notifications(drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook) -> None:
    folder = drive.add_folder("Archive")
    watcher.register(ORG, folder)
    drive.add_file("a.mp4", VIDEO, folder)
    assert len(webhook.take()) == 1
    real = last_delivery(drive).headers
    drive.add_file("b.mp4", VIDEO + b"b", folder, wait=False)  # pending in the change log

    forged = [
        {**real, "X-Goog-Channel-Token": "guessed"},
        {**real, "X-Goog-Channel-ID": "heimdex-unknown"},
        {**real, "X-Goog-Resource-ID": "another-resource"},
        {k: v for k, v in real.items() if k != "X-Goog-Channel-Token"},
    ]
    for headers in forged:
        with pytest.raises(NotificationRefused):
            watcher.handle_notification(headers)
        assert webhook.post(headers) == 403
    drive.drain()
    assert [type(c) for c in webhook.take()] == [Upsert]  # the genuine one still went through


def test_a_notification_never_yields_a_change_twice(
    drive: FakeDrive, access: DriveAccess, settings: Settings, store: FirestoreWatchStore, webhook: Webhook
) -> None:
    watcher = make_watcher(access, store, webhook, settings, page_size=2)
    folder = drive.add_folder("Archive")
    watcher.register(ORG, folder)

    # Replaying a handled notification finds nothing new.
    a = drive.add_file("a.mp4", VIDEO, folder)
    assert webhook.take() == [upsert(drive, a)]
    replay = last_delivery(drive).headers
    assert webhook.post(replay) == 200 and webhook.take() == []
    assert watcher.handle_notification(replay) == []

    # Missed notifications: one later notification lists every page (page size 2, five files).
    webhook.paused = True
    ids = [drive.add_file(f"v{i}.mp4", VIDEO + bytes([i]), folder) for i in range(5)]
    webhook.paused = False
    lists_before = sum(r.path == "/drive/v3/changes" for r in drive.requests)
    assert watcher.handle_notification(replay) == [upsert(drive, i) for i in ids]
    assert sum(r.path == "/drive/v3/changes" for r in drive.requests) - lists_before == 3

    # Concurrent deliveries of the same notification: the change comes out exactly once.
    late = drive.add_file("late.mp4", VIDEO + b"late", folder, wait=False)
    results: list[list[Change]] = []
    lock = threading.Lock()

    def handle() -> None:
        out = watcher.handle_notification(replay)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=handle) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drive.drain()
    seen = [c for out in results for c in out] + webhook.take()
    assert seen == [upsert(drive, late)]


def test_download_and_stat(drive: FakeDrive, access: DriveAccess, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024 + 17)
    fid = drive.add_file("long.mkv", data, drive.add_folder("Archive"))
    store = DriveSourceStore(org_service(access), chunk_size=64 * 1024, tmp_dir=tmp_path)

    info = store.stat(f"drive://{fid}")
    assert (info.uri, info.size) == (f"drive://{fid}", len(data))
    assert info.version == drive.files[fid].resource()["md5Checksum"]

    with store.local_path(f"drive://{fid}") as path:
        assert path.suffix == ".mkv"
        assert path.read_bytes() == data
    assert not path.exists()
    ranges = [r.range for r in drive.media_requests(fid)]
    assert ranges == [f"bytes={i * 65536}-{(i + 1) * 65536 - 1}" for i in range(5)]

    # Ranged reads, as the media API streams a Drive file to a player (api/media.py).
    assert store.read_range(f"drive://{fid}", 100, 199) == data[100:200]
    assert drive.media_requests(fid)[-1].range == "bytes=100-199"
    with pytest.raises(MediaError, match="not found"):
        store.read_range("drive://1doesNotExist", 0, 9)

    drive.update_file(fid, data[:1000])
    assert store.stat(f"drive://{fid}").version != info.version

    small = DriveSourceStore(org_service(access), max_bytes=999)
    with pytest.raises(MediaError, match="larger"), small.local_path(f"drive://{fid}"):
        pass
    with pytest.raises(MediaError, match="not found"):
        store.stat("drive://1doesNotExist")
    with pytest.raises(MediaError, match="no binary content"):
        store.stat(f"drive://{MY_DRIVE_ROOT}")
    with pytest.raises(ValueError):
        store.stat("gs://bucket/object")
    drive.trash(fid)
    with pytest.raises(MediaError, match="trash"):
        store.stat(f"drive://{fid}")
    assert list(tmp_path.iterdir()) == []


def test_renew_replaces_the_channel(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook, store: FirestoreWatchStore, settings: Settings
) -> None:
    folder = drive.add_folder("Archive")
    old = watcher.register(ORG, folder).channel
    drive.add_file("a.mp4", VIDEO, folder)
    assert len(webhook.take()) == 1
    old_headers = last_delivery(drive).headers

    assert watcher.renew() == 0  # fresh channels are left alone
    assert drive.stopped == []
    assert watcher.renew(now=time.time() + settings.drive_channel_ttl_s - 3600) == 1
    drive.drain()

    [new] = drive.active_channels()
    assert new.id != old.id and drive.stopped == [old.id]
    watch = store.get(ORG, folder)
    assert watch is not None and [c.id for c in watch.channels] == [new.id]
    assert last_delivery(drive, "sync").headers["X-Goog-Channel-ID"] == new.id

    b = drive.add_file("b.mp4", VIDEO + b"b", folder)
    assert webhook.take() == [upsert(drive, b)]
    assert last_delivery(drive).headers["X-Goog-Channel-ID"] == new.id
    assert webhook.post(old_headers) == 403
    with pytest.raises(NotificationRefused):
        watcher.handle_notification(old_headers)


def test_unregister(
    drive: FakeDrive, watcher: DriveWatcher, webhook: Webhook, store: FirestoreWatchStore
) -> None:
    folder = drive.add_folder("Archive")
    channel = watcher.register(ORG, folder).channel
    drive.drain()
    headers = last_delivery(drive, "sync").headers

    assert watcher.unregister(ORG, folder) is True
    assert drive.stopped == [channel.id] and drive.active_channels() == []
    assert store.get(ORG, folder) is None and store.list_all() == []
    assert webhook.post(headers) == 403
    assert watcher.unregister(ORG, folder) is False


def test_service_for_google_builds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth

    seen_scopes: list[Any] = []

    def fake_default(scopes: list[str] | None = None, **_: Any) -> tuple[Any, str]:
        seen_scopes.append(scopes)
        return AnonymousCredentials(), "heimdex-test"

    monkeypatch.setattr(google.auth, "default", fake_default)
    access = DriveAccess(Settings(drive_api_root=None), None)
    service = access.open(ORG, "service_account").service
    assert seen_scopes == [["https://www.googleapis.com/auth/drive.readonly"]]
    assert service._baseUrl == "https://www.googleapis.com/drive/v3/"
    fake = drive_service(Settings(drive_api_root="http://127.0.0.1:9/"), AnonymousCredentials())
    assert fake._baseUrl == "http://127.0.0.1:9/drive/v3/"
