"""Organisations' own Drive credentials: OAuth 2.0 consent, and the grants it leaves, kept encrypted.

- `TokenCipher`: AES-256-GCM under `HEIMDEX_DRIVE_TOKEN_KEY` (a Secret Manager secret in the cloud).
  The organisation is authenticated data, so a ciphertext copied into another organisation's record
  does not decrypt. Only the refresh token is kept; access tokens live in memory and are refreshed.
- `ConsentState`: the OAuth `state` parameter, HMAC-signed with a key derived from the token key:
  organisation, expiry and a nonce. The callback believes nothing else about who asked.
- `OAuthClient`: the authorization URL, the code exchange and revocation, at Google's endpoints
  (settings, so that tests point them at the fake).
- `Grant`, `GrantStore`, `FirestoreGrantStore`: one grant per organisation. A revoked grant keeps
  its record (status and reason, without the token) so that the organisation can see why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from heimdex.adapters.drive_client import SCOPE
from heimdex.config import Settings
from heimdex.domain import KEY_BYTES, decode_key, validate_org

CONSENT_TTL_S = 600
HTTP_TIMEOUT_S = 30
_AAD = b"heimdex drive grant\x00"


def new_key() -> str:
    """A fresh value for HEIMDEX_DRIVE_TOKEN_KEY."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the token key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"heimdex key id\x00" + key).hexdigest()[:16]
        self.state_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"heimdex drive consent state"
        ).derive(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        if settings.drive_token_key is None:
            raise NotConfigured("HEIMDEX_DRIVE_TOKEN_KEY is not set: Drive grants cannot be kept")
        return cls(decode_key(settings.drive_token_key.get_secret_value()))

    def encrypt(self, org_id: str, plaintext: str) -> dict[str, Any]:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _AAD + org_id.encode())
        return {"key_id": self.key_id, "nonce": nonce, "ciphertext": sealed}

    def decrypt(self, org_id: str, record: dict[str, Any]) -> str:
        if record.get("key_id") != self.key_id:
            raise ValueError(
                f"the Drive grant of {org_id} was sealed with another HEIMDEX_DRIVE_TOKEN_KEY"
                " (key rotated without re-encrypting?): connect Drive again"
            )
        try:
            plain = self._aead.decrypt(
                bytes(record["nonce"]), bytes(record["ciphertext"]), _AAD + org_id.encode()
            )
        except InvalidTag:
            raise ValueError(
                f"the Drive grant of {org_id} does not open with this key: it was not sealed for {org_id}"
            ) from None
        return plain.decode()


class NotConfigured(Exception):
    """Delegated Drive access is not configured in this deployment (client id, secret or key unset)."""


class InvalidState(Exception):
    """An OAuth `state` that this deployment did not sign, or signed too long ago."""


class ConsentState:
    """`<payload>.<mac>`, both base64url; payload: {"org", "exp", "nonce"}."""

    def __init__(self, key: bytes, *, ttl_s: int = CONSENT_TTL_S, clock: Callable[[], float] = time.time):
        self.key = key
        self.ttl_s = ttl_s
        self.clock = clock

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def sign(self, org_id: str) -> str:
        validate_org(org_id)
        body = {"org": org_id, "exp": int(self.clock()) + self.ttl_s, "nonce": secrets.token_urlsafe(16)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, state: str) -> str:
        """The organisation that asked for this consent, or InvalidState."""
        payload, _, mac = state.partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidState("the consent state is not one this deployment signed")
        try:
            body = json.loads(_unb64(payload))
            org, exp = body["org"], body["exp"]
        except (ValueError, KeyError, TypeError):
            raise InvalidState("the consent state is malformed") from None
        if not isinstance(exp, int) or exp < self.clock():
            raise InvalidState("the consent state has expired: ask for a new consent URL")
        try:
            return validate_org(org)
        except (ValueError, TypeError):
            raise InvalidState("the consent state names no valid organisation") from None


@dataclass(frozen=True)
class TokenResponse:
    refresh_token: str = field(repr=False)
    scope: str


class ConsentFailed(Exception):
    """Google refused the code exchange (an expired or reused code, a wrong client)."""


class OAuthClient:
    """The web-server flow of OAuth 2.0 against Google's endpoints (from settings)."""

    def __init__(self, settings: Settings, redirect_uri: str) -> None:
        secret = settings.drive_oauth_client_secret
        if not settings.drive_oauth_client_id or secret is None or not secret.get_secret_value():
            raise NotConfigured(
                "Drive consent is not configured: HEIMDEX_DRIVE_OAUTH_CLIENT_ID and"
                " HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET are needed"
            )
        self.client_id = settings.drive_oauth_client_id
        self.client_secret = secret.get_secret_value()
        self.auth_uri = settings.drive_oauth_auth_uri
        self.token_uri = settings.drive_oauth_token_uri
        self.revoke_uri = settings.drive_oauth_revoke_uri
        self.redirect_uri = redirect_uri

    def authorization_url(self, state: str) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "access_type": "offline",  # a refresh token
            "prompt": "consent",  # every time, so that a refresh token comes back every time
            "include_granted_scopes": "false",
            "state": state,
        }
        return f"{self.auth_uri}?{urllib.parse.urlencode(query)}"

    def exchange(self, code: str) -> TokenResponse:
        resp = requests.post(
            self.token_uri,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uri": self.redirect_uri,
            },
            timeout=HTTP_TIMEOUT_S,
        )
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 500:
            resp.raise_for_status()
        if resp.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", resp.status_code) if isinstance(body, dict) else resp.status_code
            raise ConsentFailed(f"Google refused the authorization code ({error})")
        refresh = body.get("refresh_token")
        scopes = str(body.get("scope") or "").split()
        if not isinstance(refresh, str) or not refresh:
            raise ConsentFailed("Google returned no refresh token (offline access was not granted)")
        if SCOPE not in scopes and "https://www.googleapis.com/auth/drive" not in scopes:
            raise ConsentFailed(
                f"read access to Drive was not granted (scopes: {' '.join(scopes) or 'none'})"
            )
        return TokenResponse(refresh, " ".join(scopes))

    def revoke(self, token: str) -> bool:
        """Revoke a grant at Google; False if Google no longer knows it (already revoked)."""
        resp = requests.post(self.revoke_uri, data={"token": token}, timeout=HTTP_TIMEOUT_S)
        if resp.status_code >= 500:
            resp.raise_for_status()
        return resp.status_code == 200


# ---------------------------------------------------------------- grants


GrantStatus = Literal["active", "revoked"]


@dataclass(frozen=True)
class Grant:
    """An organisation's consent. `refresh_token` is empty once revoked."""

    org_id: str
    grant_id: str
    refresh_token: str = field(repr=False)
    scope: str
    status: GrantStatus = "active"
    granted_at: datetime | None = None
    reason: str | None = None

    @classmethod
    def new(cls, org_id: str, refresh_token: str, scope: str) -> Grant:
        return cls(validate_org(org_id), uuid.uuid4().hex, refresh_token, scope, "active", datetime.now(UTC))

    def public(self) -> dict[str, Any]:
        """What the organisation may see of it (never the token)."""
        return {
            "org_id": self.org_id,
            "status": self.status,
            "scope": self.scope,
            "granted_at": self.granted_at.isoformat() if self.granted_at else None,
            "reason": self.reason,
        }


class GrantStore(Protocol):
    def put(self, grant: Grant) -> Grant | None:
        """Store the organisation's grant, replacing any; returns the one it replaced."""
        ...

    def get(self, org_id: str) -> Grant | None: ...

    def mark_revoked(self, org_id: str, grant_id: str, reason: str) -> bool:
        """Mark that grant revoked (its token erased) if it is still the organisation's active one."""
        ...


class FirestoreGrantStore:
    """One document per organisation (id = org id): the refresh token only as AES-GCM ciphertext."""

    def __init__(self, client: Any, collection: str, cipher: TokenCipher) -> None:
        self.client = client
        self.grants = client.collection(collection)
        self.cipher = cipher

    def _ref(self, org_id: str) -> Any:
        return self.grants.document(validate_org(org_id))

    def _transact(self, fn: Callable[[Any], Any]) -> Any:
        from google.cloud import firestore

        return firestore.transactional(fn)(self.client.transaction(max_attempts=20))

    def _doc(self, grant: Grant) -> dict[str, Any]:
        sealed = self.cipher.encrypt(grant.org_id, grant.refresh_token) if grant.refresh_token else None
        return {
            "org_id": grant.org_id,
            "grant_id": grant.grant_id,
            "status": grant.status,
            "scope": grant.scope,
            "granted_at": grant.granted_at,
            "reason": grant.reason,
            "sealed": sealed,
            "updated_at": datetime.now(UTC),
        }

    def _grant(self, doc: dict[str, Any]) -> Grant:
        sealed = doc.get("sealed")
        status: GrantStatus = "active" if doc.get("status") == "active" else "revoked"
        token = self.cipher.decrypt(doc["org_id"], sealed) if sealed and status == "active" else ""
        return Grant(
            org_id=doc["org_id"],
            grant_id=doc["grant_id"],
            refresh_token=token,
            scope=str(doc.get("scope") or ""),
            status=status,
            granted_at=doc.get("granted_at"),
            reason=doc.get("reason"),
        )

    def put(self, grant: Grant) -> Grant | None:
        ref = self._ref(grant.org_id)
        doc = self._doc(grant)

        def txn(tx: Any) -> dict[str, Any] | None:
            snap = ref.get(transaction=tx)
            tx.set(ref, doc)
            return snap.to_dict() if snap.exists else None

        old = self._transact(txn)
        return self._grant(old) if old else None

    def get(self, org_id: str) -> Grant | None:
        snap = self._ref(org_id).get()
        return self._grant(snap.to_dict() or {}) if snap.exists else None

    def mark_revoked(self, org_id: str, grant_id: str, reason: str) -> bool:
        ref = self._ref(org_id)

        def txn(tx: Any) -> bool:
            snap = ref.get(transaction=tx)
            doc = snap.to_dict() if snap.exists else None
            if not doc or doc.get("grant_id") != grant_id or doc.get("status") != "active":
                return False
            tx.update(
                ref, {"status": "revoked", "reason": reason, "sealed": None, "updated_at": datetime.now(UTC)}
            )
            return True

        marked: bool = self._transact(txn)
        return marked
