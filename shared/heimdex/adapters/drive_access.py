"""Whose credentials an organisation's Drive calls use, and what it must show before it may watch.

Two ways for an organisation to prove it can read a folder:

1. **Delegated**: a user of the organisation consented (OAuth 2.0, `/v1/drive/consent`); its grant
   (`drive_auth`) gives the organisation's own credentials, and `files.get(folder)` with them must
   succeed. Every later call of that watch (changes, downloads) uses the same credentials.
2. **Service account**: the operator mapped the folder to exactly one organisation in
   `HEIMDEX_DRIVE_SA_FOLDERS`; the deployment's own account reads it, for that organisation only.

Knowing a folder id proves nothing. A folder mapped to another organisation is refused with 409
unless the organisation proves access with its own grant; several organisations may watch one folder
only if each proves access itself, each with its own credentials.

A refresh that Google answers `invalid_grant` (the user or an administrator revoked access, or the
account is gone) marks the grant revoked (`GrantRevoked`); the watcher then stops the organisation's
delegated watches and the stages fail its Drive jobs at once with the reason (`AccessLost`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from googleapiclient.errors import HttpError

from heimdex.adapters.drive_auth import FirestoreGrantStore, Grant, GrantStore, NotConfigured, TokenCipher
from heimdex.adapters.drive_client import SCOPE, drive_service, execute, invalid_grant, status_of
from heimdex.adapters.drive_watches import Auth, Watch
from heimdex.config import Settings
from heimdex.domain import MediaError

FOLDER_MIME = "application/vnd.google-apps.folder"
CONSENT_PATH = "/v1/drive/consent"

log = logging.getLogger(__name__)


class AccessDenied(Exception):
    """The organisation has not shown it can read the folder (403)."""

    status = 403
    code = "forbidden"


class AccessConflict(AccessDenied):
    """The operator gave the folder to another organisation, and this one has not shown access of its
    own (409)."""

    status = 409
    code = "conflict"


class GrantRevoked(Exception):
    """The organisation's grant is revoked or gone: its delegated Drive calls cannot be made."""

    def __init__(self, org_id: str, reason: str) -> None:
        super().__init__(reason)
        self.org_id = org_id
        self.reason = reason


class AccessLost(MediaError):
    """A Drive source the organisation can no longer read (grant revoked, nothing mapped): the job
    fails with this reason rather than being retried."""


class NotReadable(Exception):
    """Drive answered 404 or 403: these credentials cannot read the item."""


@dataclass(frozen=True)
class Session:
    """The Drive client of one organisation's calls, and which credentials it carries."""

    org_id: str
    auth: Auth
    service: Any = field(repr=False)
    grant_id: str | None = None  # delegated: the grant whose credentials these are


@dataclass(frozen=True)
class Proof:
    """How an organisation showed it can read a folder, and the folder's metadata as it saw it."""

    session: Session
    folder: dict[str, Any]


def revoked_reason(org_id: str, google_says: str) -> str:
    return (
        f"the Drive grant of organisation {org_id} was revoked or has expired at Google ({google_says}):"
        f" connect Drive again at {CONSENT_PATH} and register the folder again"
    )


class DriveAccess:
    def __init__(
        self, settings: Settings, grants: GrantStore | None, *, deployment_credentials: Any = None
    ) -> None:
        self.settings = settings
        self.grants = grants
        self._deployment_credentials = deployment_credentials
        self._lock = threading.Lock()
        self._delegated: dict[str, Session] = {}  # org -> session of its current grant
        self._deployment: Session | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DriveAccess:
        """Grants in Firestore when HEIMDEX_DRIVE_TOKEN_KEY is set; without it, only mapped folders."""
        grants = None
        if settings.drive_token_key is not None:
            from heimdex.adapters.firestore_jobs import firestore_client

            client = firestore_client(settings.project, settings.firestore_database)
            grants = FirestoreGrantStore(
                client, settings.drive_grants_collection, TokenCipher.from_settings(settings)
            )
        return cls(settings, grants)

    # -- who may use the deployment's account

    def mapped_org(self, folder_id: str) -> str | None:
        """The organisation the operator gave this folder to (HEIMDEX_DRIVE_SA_FOLDERS), if any."""
        return self.settings.drive_sa_folders.get(folder_id)

    def maps_any(self, org_id: str) -> bool:
        return org_id in self.settings.drive_sa_folders.values()

    # -- credentials and clients

    def grant(self, org_id: str) -> Grant | None:
        return self.grants.get(org_id) if self.grants is not None else None

    def deployment_credentials(self) -> Any:
        if self._deployment_credentials is None:
            if self.settings.drive_sa_key_file:
                from google.oauth2 import service_account

                self._deployment_credentials = service_account.Credentials.from_service_account_file(
                    self.settings.drive_sa_key_file, scopes=[SCOPE]
                )
            else:
                import google.auth

                self._deployment_credentials = google.auth.default(scopes=[SCOPE])[0]
        return self._deployment_credentials

    def _delegated_credentials(self, grant: Grant) -> Any:
        from google.oauth2.credentials import Credentials

        secret = self.settings.drive_oauth_client_secret
        if not self.settings.drive_oauth_client_id or secret is None:
            raise NotConfigured("HEIMDEX_DRIVE_OAUTH_CLIENT_ID/SECRET are not set: grants cannot be used")
        return Credentials(
            token=None,  # refreshed before the first call, and whenever it expires or Drive answers 401
            refresh_token=grant.refresh_token,
            token_uri=self.settings.drive_oauth_token_uri,
            client_id=self.settings.drive_oauth_client_id,
            client_secret=secret.get_secret_value(),
            scopes=[SCOPE],
        )

    def open(self, org_id: str, auth: Auth) -> Session:
        """The client for an organisation's calls with `auth`; GrantRevoked when a delegated call has
        no active grant to use."""
        if auth == "service_account":
            with self._lock:
                if self._deployment is None:
                    service = drive_service(self.settings, self.deployment_credentials())
                    self._deployment = Session("", "service_account", service)
                return Session(org_id, "service_account", self._deployment.service)
        grant = self.grant(org_id)
        if grant is None:
            raise GrantRevoked(
                org_id, f"organisation {org_id} has no Drive grant: connect Drive at {CONSENT_PATH}"
            )
        if grant.status != "active":
            raise GrantRevoked(org_id, grant.reason or revoked_reason(org_id, "revoked"))
        with self._lock:
            session = self._delegated.get(org_id)
            if session is None or session.grant_id != grant.grant_id:  # a new consent replaced the grant
                service = drive_service(self.settings, self._delegated_credentials(grant))
                session = Session(org_id, "delegated", service, grant.grant_id)
                self._delegated[org_id] = session
            return session

    @contextmanager
    def guarded(self, session: Session) -> Iterator[Any]:
        """Make Drive calls with the session's client; a delegated refresh refused with
        `invalid_grant` marks that grant revoked and raises GrantRevoked."""
        try:
            yield session.service
        except Exception as exc:
            google_says = invalid_grant(exc)
            if google_says is None or session.auth != "delegated":
                raise
            reason = revoked_reason(session.org_id, google_says)
            if self.grants is not None and session.grant_id is not None:
                try:
                    self.grants.mark_revoked(session.org_id, session.grant_id, reason)
                except Exception:  # bookkeeping: a reader without write access (the search API)
                    log.warning(
                        "could not record a revoked grant", extra={"org": session.org_id}, exc_info=True
                    )
            with self._lock:
                self._delegated.pop(session.org_id, None)
            raise GrantRevoked(session.org_id, reason) from exc

    def forget(self, org_id: str) -> None:
        """Drop the cached client of an organisation's grant (after it was revoked or replaced)."""
        with self._lock:
            self._delegated.pop(org_id, None)

    # -- watches

    def watch_problem(self, watch: Watch) -> str | None:
        """Why this watch may no longer read its folder, or None while it may."""
        if watch.auth == "service_account":
            if self.mapped_org(watch.folder_id) != watch.org_id:
                return (
                    f"folder {watch.folder_id} is not mapped to organisation {watch.org_id} in"
                    " HEIMDEX_DRIVE_SA_FOLDERS: the deployment's Drive account no longer reads it for"
                    f" {watch.org_id}; connect Drive at {CONSENT_PATH} and register the folder again"
                )
            return None
        grant = self.grant(watch.org_id)
        if grant is None:
            return f"organisation {watch.org_id} has no Drive grant: connect Drive at {CONSENT_PATH}"
        if grant.status != "active":
            return grant.reason or revoked_reason(watch.org_id, "revoked")
        return None

    def folder(self, session: Session, folder_id: str) -> dict[str, Any]:
        """The folder's metadata as these credentials see it; NotReadable, or ValueError for an item
        that is not a folder."""
        with self.guarded(session) as service:
            try:
                meta = execute(
                    service.files().get(
                        fileId=folder_id, fields="id,mimeType,driveId,trashed", supportsAllDrives=True
                    )
                )
            except HttpError as exc:
                if status_of(exc) in (403, 404):
                    raise NotReadable(folder_id) from exc
                raise
        if meta.get("mimeType") != FOLDER_MIME or meta.get("id") != folder_id:
            raise ValueError(f"Drive item {folder_id!r} is not a folder id")
        return meta

    def prove(self, org_id: str, folder_id: str) -> Proof:
        """How `org_id` may watch `folder_id`, or AccessDenied / AccessConflict saying why not."""
        owner = self.mapped_org(folder_id)
        if owner == org_id:
            session = self.open(org_id, "service_account")
            try:
                return Proof(session, self.folder(session, folder_id))
            except NotReadable:
                raise AccessDenied(
                    f"folder {folder_id} is mapped to organisation {org_id}, but the deployment's Drive"
                    " account cannot read it: the operator must share it with that account"
                ) from None
        not_shown = f"organisation {org_id} has not shown it can read folder {folder_id}"
        refuse = AccessConflict if owner is not None else AccessDenied
        elsewhere = "; the operator assigned it to another organisation" if owner is not None else ""
        try:
            session = self.open(org_id, "delegated")
            return Proof(session, self.folder(session, folder_id))
        except GrantRevoked as exc:
            grant = self.grant(org_id)
            if grant is None:
                raise refuse(f"{not_shown}: connect Drive at {CONSENT_PATH}{elsewhere}") from None
            raise refuse(f"{not_shown}: {exc.reason}{elsewhere}") from None
        except NotReadable:
            raise refuse(
                f"{not_shown}: the Drive account it connected cannot read it (share the folder with"
                f" that account, or connect another at {CONSENT_PATH}){elsewhere}"
            ) from None
