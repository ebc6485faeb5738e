"""Who may watch a Drive folder (issue 11, finding 1): an organisation watches only a folder it has
shown it can read with credentials of its own (its OAuth grant), or one the operator mapped to it
for the deployment's account.

The drive_watch app is served on 127.0.0.1 (real HTTP: the fake Drive pushes notifications to it and
the browser step of the consent lands on its callback); the fake Drive speaks Drive v3 and Google's
OAuth 2.0 endpoints to the official clients and enforces which access token reads which file. Grants
and watches live in Google's Firestore emulator. Ingest is real; its job store and dispatcher record
what would have run.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from google.api_core.exceptions import PermissionDenied
from google.cloud import firestore

from heimdex.adapters.drive import DISCONNECTED, DriveAccess, DriveWatcher, FirestoreWatchStore
from heimdex.adapters.drive_access import AccessLost
from heimdex.adapters.drive_auth import ConsentState, FirestoreGrantStore, TokenCipher, new_key
from heimdex.adapters.drive_sources import OrgDriveSources
from heimdex.api.auth import issue_token
from heimdex.cloud.drive_watch import create_drive_app
from heimdex.config import Settings
from heimdex.domain import AssetRef, MediaError
from tests.fakes import WsgiServer
from tests.fakes.drive_server import MY_DRIVE_ROOT, SERVICE_ACCOUNT, FakeClient, FakeDrive

SECRET = "drive-ownership-test-secret-0123456789"
ALICE = "alice@alpha.example"  # alpha's user; the folder is in her My Drive
BOB = "bob@beta.example"  # beta's user; reads nothing of alice's
CAROL = "carol@gamma.example"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
SCOPE = "https://www.googleapis.com/auth/drive.readonly"


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    fake.share(MY_DRIVE_ROOT, ALICE)
    yield fake
    fake.stop()


class Jobs:
    """The job store as ingest uses it: records the jobs made."""

    def __init__(self) -> None:
        self.made: list[AssetRef] = []
        self._jobs: dict[str, dict[str, Any]] = {}

    def create(self, ref: AssetRef) -> bool:
        if ref.job_id in self._jobs:
            return False
        self._jobs[ref.job_id] = {"status": "running", "stages": {}}
        self.made.append(ref)
        return True

    def get(self, ref: AssetRef) -> dict[str, Any] | None:
        return self._jobs.get(ref.job_id)

    def orgs(self) -> list[tuple[str, str]]:
        return [(ref.org_id, ref.source) for ref in self.made]


class Dispatcher:
    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str]] = []

    def enqueue(self, ref: AssetRef, stage: str) -> None:
        self.enqueued.append((ref.job_id, stage))


class LateApp:
    """A WSGI app set after the server has its port (the settings need the URL)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class Env:
    """One drive_watch deployment: its settings, served app, stores and recorded jobs."""

    drive: FakeDrive
    client: FakeClient
    settings: Settings
    server: WsgiServer
    watcher: DriveWatcher
    grants: FirestoreGrantStore
    jobs: Jobs = field(default_factory=Jobs)

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")

    def call(self, method: str, path: str, org: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {issue_token(SECRET, org)}"} if org else {}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def register(self, org: str, folder: str) -> requests.Response:
        return self.call("POST", "/v1/watches", org, json={"folder_id": folder})

    def watches(self, org: str) -> dict[str, dict[str, Any]]:
        resp = self.call("GET", "/v1/watches", org)
        assert resp.status_code == 200, resp.text
        return {w["folder_id"]: w for w in resp.json()["watches"]}

    def consent_url(self, org: str) -> str:
        resp = self.call("GET", "/v1/drive/consent", org)
        assert resp.status_code == 200, resp.text
        url: str = resp.json()["authorization_url"]
        return url

    def at_google(self, org: str, user: str, **headers: str) -> str:
        """The browser step: `user`, signed in at Google, opens the consent URL and is sent back."""
        resp = requests.get(
            self.consent_url(org), headers={"X-Fake-User": user, **headers}, allow_redirects=False, timeout=30
        )
        assert resp.status_code == 302, resp.text
        location: str = resp.headers["Location"]
        return location

    def connect(self, org: str, user: str) -> requests.Response:
        return requests.get(self.at_google(org, user), timeout=60)  # the browser follows the redirect


@pytest.fixture
def make_env(drive: FakeDrive, firestore_client: firestore.Client, tmp_path: Path) -> Iterator[Any]:
    """Deployments on one fake Drive, sharing their Firestore collections (so that a second one is the
    same deployment with other settings)."""
    servers: list[WsgiServer] = []
    client = drive.register_client()
    names = {
        "watches_collection": f"watches-{uuid.uuid4().hex[:12]}",
        "drive_grants_collection": f"grants-{uuid.uuid4().hex[:12]}",
    }
    key = new_key()
    sa_key = tmp_path / "drive-sa.json"
    sa_key.write_text(json.dumps(drive.service_account(SERVICE_ACCOUNT)))

    def make(sa_folders: dict[str, str] | None = None) -> Env:
        late = LateApp()
        server = WsgiServer(late)
        settings = Settings(
            project="heimdex-test",
            jwt_secret=SECRET,
            drive_webhook_url=f"{server.url}notifications",
            drive_token_key=key,
            drive_sa_folders=sa_folders or {},
            drive_sa_key_file=str(sa_key),
            **names,
            **drive.settings(client),
        )
        drive.allow_redirect(client.id, f"{server.url}v1/drive/callback")
        grants = FirestoreGrantStore(
            firestore_client, settings.drive_grants_collection, TokenCipher.from_settings(settings)
        )
        watcher = DriveWatcher(
            DriveAccess(settings, grants),
            FirestoreWatchStore(firestore_client, settings.watches_collection),
            settings,
        )
        env = Env(drive, client, settings, server, watcher, grants)
        late.app = create_drive_app(
            # ingest also asks whether a version was deleted through the API (no index here: never)
            SimpleNamespace(settings=settings, jobs=env.jobs, is_deleted=lambda *_, **__: False),
            Dispatcher(),
            lambda: watcher,
        )
        servers.append(server.start())
        return env

    yield make
    for server in servers:
        server.stop()


def refresh_token_of(drive: FakeDrive, user: str) -> str:
    [token] = [g.refresh_token for g in drive.grants.values() if g.principal == user and not g.revoked]
    return token


def last_change_reply(drive: FakeDrive) -> dict[str, Any]:
    delivery = [d for d in drive.deliveries if d.state == "change"][-1]
    assert delivery.status == 200, delivery
    reply: dict[str, Any] = json.loads(delivery.body)
    return reply


def no_access(org: str, folder: str) -> str:
    return f"organisation {org} has not shown it can read folder {folder}: connect Drive at /v1/drive/consent"


# -- the review's probe ------------------------------------------------------------------------------


def test_knowing_a_folder_id_is_not_enough(make_env: Any, drive: FakeDrive) -> None:
    env: Env = make_env()
    folder = drive.add_folder("Alpha rushes")

    # Beta registers alpha's folder first: refused, and nothing was opened at Drive.
    resp = env.register("beta", folder)
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"error": no_access("beta", folder), "code": "forbidden"}
    assert env.register("alpha", folder).status_code == 403  # alpha has not connected either
    assert drive.active_channels() == []

    assert env.connect("alpha", ALICE).json()["status"] == "connected"
    created = env.register("alpha", folder)
    assert created.status_code == 201, created.text
    assert created.json()["auth"] == "delegated" and created.json()["status"] == "active"

    # Beta, even with a Drive of its own connected, has not shown it can read the folder.
    assert env.register("beta", folder).json()["code"] == "forbidden"
    assert env.connect("beta", BOB).status_code == 200
    resp = env.register("beta", folder)
    assert resp.status_code == 403 and "the Drive account it connected cannot read it" in resp.json()["error"]
    assert env.watches("beta") == {}

    video = drive.add_file("interview.mp4", VIDEO, drive.add_folder("day 1", folder))
    assert env.jobs.orgs() == [("alpha", f"drive://{video}")]  # alpha only
    [channel] = drive.active_channels()
    assert channel.principal == ALICE
    listed = [r for r in drive.requests if r.path == "/drive/v3/changes"]
    assert listed and {r.principal for r in listed} == {ALICE}  # with alpha's own credentials


def test_a_folder_the_operator_mapped(make_env: Any, drive: FakeDrive) -> None:
    shared = drive.add_shared_drive("Newsroom", members=[SERVICE_ACCOUNT, CAROL])
    mapped = drive.add_folder("Alpha feed", shared)
    unreadable = drive.add_folder("Not shared with the deployment")
    env: Env = make_env({mapped: "alpha", unreadable: "alpha"})

    resp = env.register("beta", mapped)  # mapped to alpha: beta has no claim of its own
    assert resp.status_code == 409 and resp.json()["code"] == "conflict", resp.text
    assert "assigned it to another organisation" in resp.json()["error"]
    created = env.register("alpha", mapped)  # no grant needed: the deployment's account reads it
    assert created.status_code == 201 and created.json()["auth"] == "service_account", created.text
    assert [c.principal for c in drive.active_channels()] == [SERVICE_ACCOUNT]
    resp = env.register("alpha", unreadable)
    assert resp.status_code == 403 and "must share it with that account" in resp.json()["error"]

    # Gamma proves access with its own grant: both watch, each with its own credentials.
    env.connect("gamma", CAROL)
    assert env.register("gamma", mapped).json()["auth"] == "delegated"
    video = drive.add_file("feed.mp4", VIDEO, mapped)
    assert sorted(env.jobs.orgs()) == [("alpha", f"drive://{video}"), ("gamma", f"drive://{video}")]

    # The operator unmaps the folder (the deployment restarts with new settings): the next renewal
    # stops alpha's watch and its channel; gamma's goes on.
    after = make_env({})
    assert after.call("POST", "/renew").json() == {"renewed": 0}
    alpha = after.watches("alpha")[mapped]
    assert alpha["status"] == "revoked" and "not mapped to organisation alpha" in alpha["reason"]
    assert [c.principal for c in drive.active_channels()] == [CAROL]
    drive.add_file("later.mp4", VIDEO + b"later", mapped)
    assert Counter(org for org, _ in env.jobs.orgs()) == {"alpha": 1, "gamma": 2}


# -- consent -----------------------------------------------------------------------------------------


def test_consent_end_to_end_keeps_the_token_encrypted(
    make_env: Any, drive: FakeDrive, firestore_client: firestore.Client
) -> None:
    env: Env = make_env()
    url = urlsplit(env.consent_url("alpha"))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == drive.auth_uri
    assert query["client_id"] == env.client.id and query["scope"] == SCOPE
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["redirect_uri"] == f"{env.url}/v1/drive/callback" and query["state"]

    resp = env.connect("alpha", ALICE)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"org_id": "alpha", "status": "connected", "scope": SCOPE}
    assert [(r.grant_type, r.principal, r.status) for r in drive.token_requests] == [
        ("authorization_code", ALICE, 200)
    ]

    refresh = refresh_token_of(drive, ALICE)
    raw = firestore_client.collection(env.settings.drive_grants_collection).document("alpha").get().to_dict()
    assert raw is not None and raw["status"] == "active"
    stored = repr(raw).encode() + b"".join(v for v in raw["sealed"].values() if isinstance(v, bytes))
    assert refresh.encode() not in stored and refresh.encode() not in base64.b64encode(stored)
    assert env.grants.get("alpha").refresh_token == refresh  # type: ignore[union-attr]

    # Sealed for alpha, the ciphertext does not open as another organisation's grant.
    firestore_client.collection(env.settings.drive_grants_collection).document("beta").set(
        {**raw, "org_id": "beta"}
    )
    with pytest.raises(ValueError, match="does not open"):
        env.grants.get("beta")

    assert env.call("GET", "/v1/drive/grant", "alpha").json()["status"] == "active"
    assert env.call("GET", "/v1/drive/grant", "gamma").json() == {"org_id": "gamma", "status": "none"}
    assert "refresh" not in env.call("GET", "/v1/drive/grant", "alpha").text


def test_consent_state_tampering_expiry_and_refusals(make_env: Any, drive: FakeDrive) -> None:
    env: Env = make_env()
    back = urlsplit(env.at_google("alpha", ALICE))
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    callback = f"{env.url}/v1/drive/callback"

    def answer(**query: str) -> requests.Response:
        return requests.get(f"{callback}?{urlencode(query)}", timeout=30)

    payload, mac = params["state"].split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**body, "org": "beta"}).encode()).rstrip(b"=").decode()
    stale = ConsentState(
        TokenCipher.from_settings(env.settings).state_key, clock=lambda: time.time() - 3600
    ).sign("alpha")
    foreign = ConsentState(TokenCipher.from_settings(Settings(drive_token_key=new_key())).state_key).sign(
        "alpha"
    )
    for state, message in (
        (f"{forged}.{mac}", "not one this deployment signed"),
        (stale, "expired"),
        (foreign, "not one this deployment signed"),
        ("", "not one this deployment signed"),
        (params["state"] + "x", "not one this deployment signed"),
    ):
        resp = answer(code=params["code"], state=state)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_state", (state, resp.text)
        assert message in resp.json()["error"]
    assert drive.token_requests == []  # the code was never sent to Google
    assert env.grants.get("alpha") is None and env.grants.get("beta") is None

    declined = urlsplit(env.at_google("alpha", ALICE, **{"X-Fake-Consent": "deny"}))
    resp = requests.get(f"{callback}?{declined.query}", timeout=30)
    assert resp.status_code == 400 and resp.json()["code"] == "consent_refused"

    assert answer(**params).status_code == 200
    replay = answer(**params)  # an authorization code works once
    assert replay.status_code == 400 and replay.json()["code"] == "consent_failed", replay.text
    assert env.call("GET", "/v1/drive/consent").status_code == 401


# -- refresh and revocation --------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed(make_env: Any, drive: FakeDrive, tmp_path: Path) -> None:
    env: Env = make_env()
    folder = drive.add_folder("Archive")
    env.connect("alpha", ALICE)
    assert env.register("alpha", folder).status_code == 201
    first = drive.add_file("a.mp4", VIDEO, folder)

    assert drive.expire_access_tokens(ALICE) > 0
    refreshes = sum(r.grant_type == "refresh_token" for r in drive.token_requests)
    second = drive.add_file("b.mp4", VIDEO + b"b", folder)
    assert env.jobs.orgs() == [("alpha", f"drive://{first}"), ("alpha", f"drive://{second}")]
    assert sum(r.grant_type == "refresh_token" for r in drive.token_requests) == refreshes + 1
    assert any(r.path == "/drive/v3/changes" and r.principal == ALICE for r in drive.requests[-3:])

    # A stage reading the file with alpha's credentials refreshes the same way.
    drive.expire_access_tokens(ALICE)
    sources = OrgDriveSources(env.watcher.access, "alpha", tmp_dir=tmp_path)
    with sources.local_path(f"drive://{second}") as path:
        assert path.read_bytes() == VIDEO + b"b"
    with pytest.raises(AccessLost, match="organisation beta has no Drive access"):
        OrgDriveSources(env.watcher.access, "beta").stat(f"drive://{second}")


def test_a_revoked_grant_stops_the_watches_and_says_so(make_env: Any, drive: FakeDrive) -> None:
    env: Env = make_env()
    folder, other = drive.add_folder("Archive"), drive.add_folder("Promos")
    env.connect("alpha", ALICE)
    assert env.register("alpha", folder).status_code == 201
    assert env.register("alpha", other).status_code == 201
    drive.add_file("a.mp4", VIDEO, folder)
    assert len(env.jobs.made) == 1

    drive.revoke_user(ALICE)  # alice removes the app's access in her Google account
    drive.add_file("b.mp4", VIDEO + b"b", folder)
    reply = last_change_reply(drive)
    assert reply["changes"] == [] and reply["status"] == "revoked"
    assert "invalid_grant" in reply["watch"]["reason"] and "connect Drive again" in reply["watch"]["reason"]
    assert len(env.jobs.made) == 1  # no job for b.mp4
    watches = env.watches("alpha")
    assert {w["status"] for w in watches.values()} == {"revoked"}  # both watches of that grant
    assert watches[other]["reason"] == watches[folder]["reason"]
    grant = env.call("GET", "/v1/drive/grant", "alpha").json()
    assert grant["status"] == "revoked" and "invalid_grant" in grant["reason"]

    # Later notifications are acknowledged as revoked without asking Google again.
    token_calls = len(drive.token_requests)
    drive.add_file("c.mp4", VIDEO + b"c", folder)
    assert last_change_reply(drive)["status"] == "revoked" and len(env.jobs.made) == 1
    assert len(drive.token_requests) == token_calls
    assert env.call("POST", "/renew").json() == {"renewed": 0}
    resp = env.register("alpha", folder)
    assert resp.status_code == 403 and "revoked" in resp.json()["error"]

    # Connecting again and registering again resumes the watch.
    env.connect("alpha", ALICE)
    assert env.register("alpha", folder).json()["status"] == "active"
    d = drive.add_file("d.mp4", VIDEO + b"d", folder)
    assert env.jobs.orgs()[-1] == ("alpha", f"drive://{d}")


def test_a_revocation_found_by_a_download_fails_the_job_once(make_env: Any, drive: FakeDrive) -> None:
    env: Env = make_env()
    folder = drive.add_folder("Archive")
    env.connect("alpha", ALICE)
    env.register("alpha", folder)
    video = drive.add_file("a.mp4", VIDEO, folder)
    drive.revoke_user(ALICE)
    drive.expire_access_tokens()  # the stage's cached token would be dead too

    sources = OrgDriveSources(env.watcher.access, "alpha")
    with pytest.raises(AccessLost, match="revoked or has expired at Google") as caught:
        sources.stat(f"drive://{video}")
    assert isinstance(caught.value, MediaError)  # the executor fails the job at once, no retries
    assert env.watches("alpha")[folder]["status"] == "revoked"  # visible before any notification
    with pytest.raises(AccessLost, match="revoked"):  # and no refresh is tried again
        sources.stat(f"drive://{video}")
    # One refresh when alpha registered, the one Google refused, none since.
    assert [r.status for r in drive.token_requests if r.grant_type == "refresh_token"] == [200, 400]


def test_a_reader_that_may_not_record_a_revocation_still_reports_it(make_env: Any, drive: FakeDrive) -> None:
    """The search API streams an organisation's Drive media but may only read grants (Terraform
    gives it no Firestore write): a revocation it finds is still AccessLost, which the media endpoint
    answers with 403 `source_access_lost`, not an error about the bookkeeping write."""
    env: Env = make_env()
    folder = drive.add_folder("Archive")
    env.connect("alpha", ALICE)
    env.register("alpha", folder)
    video = drive.add_file("a.mp4", VIDEO, folder)
    drive.revoke_user(ALICE)
    drive.expire_access_tokens()

    class ReadOnlyGrants:
        def __init__(self, inner: FirestoreGrantStore) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def mark_revoked(self, *args: Any, **kwargs: Any) -> None:
            raise PermissionDenied("Missing or insufficient permissions.")

    reader = OrgDriveSources(DriveAccess(env.settings, cast(Any, ReadOnlyGrants(env.grants))), "alpha")
    with pytest.raises(AccessLost, match="revoked"):
        reader.stat(f"drive://{video}")
    assert env.watches("alpha")[folder]["status"] == "active"  # nothing recorded by this reader


def test_disconnect_stops_the_watches_and_revokes_at_google(make_env: Any, drive: FakeDrive) -> None:
    env: Env = make_env()
    folder = drive.add_folder("Archive")
    env.connect("alpha", ALICE)
    env.register("alpha", folder)
    [channel] = drive.active_channels()
    refresh = refresh_token_of(drive, ALICE)

    resp = env.call("DELETE", "/v1/drive/grant", "alpha")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "org_id": "alpha",
        "status": "revoked",
        "revoked_at_google": True,
        "watches_stopped": [folder],
    }
    assert drive.stopped == [channel.id] and drive.revocations == [refresh]
    assert drive.grants[refresh].revoked
    watch = env.watches("alpha")[folder]
    assert (watch["status"], watch["reason"]) == ("revoked", DISCONNECTED)
    drive.add_file("a.mp4", VIDEO, folder)
    assert env.jobs.made == []
    assert env.call("DELETE", "/v1/drive/grant", "alpha").status_code == 404
    assert env.call("DELETE", "/v1/watches/" + folder, "alpha").status_code == 204
    assert env.watches("alpha") == {}
