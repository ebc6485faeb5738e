"""Bearer tokens: who the caller is, and which organisation it acts for.

- Embedded (`HEIMDEX_AUTH_MODE=hs256`, the default): HS256 JWTs carrying `org_id` and `exp`. Only
  HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail verification. When
  HEIMDEX_JWT_SECRET is unset, a random secret is made once and kept in HEIMDEX_HOME (mode 0600), and
  `heimdex token` signs with the same one.
- Cloud (`HEIMDEX_AUTH_MODE=identity_platform`): ID tokens of Google Cloud Identity Platform (Firebase
  Authentication), which a user gets by signing in (README, "Signing in"). They are RS256, signed
  by Google's `securetoken` keys (served as {key id: X.509 PEM} at HEIMDEX_AUTH_CERTS_URL), issued by
  `https://securetoken.google.com/<project>` for audience `<project>` (HEIMDEX_GOOGLE_AUDIENCE),
  and carry the organisation as the custom claim `org_id`, which only an administrator sets (Admin
  SDK `set_custom_user_claims`); a user cannot choose it. google-auth's own `verify_firebase_token`
  checks neither the issuer nor `sub`; this module checks both.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from heimdex.config import MIN_SECRET_BYTES, Settings
from heimdex.domain import is_valid_org

ALGORITHM = "HS256"
log = logging.getLogger(__name__)

CLOCK_SKEW_S = 60  # a token minted for the longest lifetime on a clock this far ahead still passes


class AuthError(Exception):
    pass


def jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    path: Path = settings.home / "jwt_secret"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def issue_token(secret: str, org_id: str, *, ttl_s: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"org_id": org_id, "iat": now, "exp": now + ttl_s}, secret, algorithm=ALGORITHM)


def bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()


def _org(claims: Mapping[str, Any]) -> str:
    org = claims.get("org_id")
    if not is_valid_org(org):
        raise AuthError("token has no valid org_id claim")
    assert isinstance(org, str)
    return org


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_lifetime(claims: Mapping[str, Any], max_ttl_s: int, now: float | None = None) -> None:
    """`exp` (and `iat`, `nbf` when present) must be JSON numbers, not numeric strings; a token
    may not expire further ahead than `max_ttl_s` (a stolen long-lived token stays useful)."""
    for claim in ("exp", "iat", "nbf"):
        if claim in claims and not _is_number(claims[claim]):
            raise AuthError(f"invalid token: the {claim} claim must be a number")
    now = time.time() if now is None else now
    if claims["exp"] > now + max_ttl_s + CLOCK_SKEW_S:
        raise AuthError(f"invalid token: it expires more than {max_ttl_s} s ahead")


def verify_google_id_token(token: str, audience: str) -> Mapping[str, Any]:
    """Claims of a Google-signed OAuth 2.0 ID token (RS256; issuer accounts.google.com), as Cloud
    Tasks and Cloud Scheduler send (worker.py): signature, expiry, issuer and audience checked by
    google-auth. Not what users sign in with (Identity Platform, below). Tokens that are not even
    shaped like one are refused before any certificate fetch; a failure to fetch Google's
    certificates propagates (a server error, not the caller's)."""
    from google.auth.transport import requests as google_requests
    from google.oauth2 import id_token

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise AuthError("invalid token: not a Google-signed (RS256) ID token")
    try:
        claims: Mapping[str, Any] = id_token.verify_oauth2_token(
            token, google_requests.Request(), audience=audience
        )
    except ValueError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    return claims


# Identity Platform's issuer prefix; its certificates: Settings.auth_certs_url.
SECURETOKEN_ISSUER = "https://securetoken.google.com/"
CLOCK_SKEW_S = 30
_MAX_AGE = re.compile(r"max-age=(\d+)")


class CertificatesUnavailable(Exception):
    """The signing certificates could not be fetched: the server's problem, not the caller's."""


class CertCache:
    """The certificates at `url`, kept as long as the response's Cache-Control max-age says (Google's:
    hours) and fetched again, at most once every `min_refetch_s`, when a token names a key id they do
    not hold (keys rotate). Thread-safe; one per process and URL (certificate_cache)."""

    def __init__(self, url: str, *, min_refetch_s: float = 60.0, default_max_age_s: float = 3600.0) -> None:
        self.url = url
        self.min_refetch_s = min_refetch_s
        self.default_max_age_s = default_max_age_s
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        from google.auth import exceptions as google_exceptions
        from google.auth.transport import requests as google_requests

        try:
            response = google_requests.Request()(self.url, method="GET", timeout=10)
        except google_exceptions.TransportError as exc:
            raise CertificatesUnavailable(f"cannot fetch signing certificates: {exc}") from exc
        if response.status != 200:
            raise CertificatesUnavailable(f"signing certificates: HTTP {response.status} from {self.url}")
        try:
            certs = json.loads(response.data.decode())
        except ValueError as exc:
            raise CertificatesUnavailable("signing certificates are not JSON") from exc
        if not isinstance(certs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in certs.items()
        ):
            raise CertificatesUnavailable("signing certificates are not a {key id: PEM} object")
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        max_age = float(match.group(1)) if match else self.default_max_age_s
        now = time.monotonic()
        self._certs, self._fetched, self._expires = certs, now, now + max_age

    def for_key(self, kid: str) -> dict[str, str]:
        """The certificate set to verify a token signed with `kid` (fetched or refreshed as needed;
        if a refresh fails, certificates past their max-age still serve the key ids they hold)."""
        with self._lock:
            now = time.monotonic()
            stale = now >= self._expires
            unknown = kid not in self._certs and now - self._fetched >= self.min_refetch_s
            if stale or unknown:
                try:
                    self._fetch()
                except CertificatesUnavailable:
                    if kid not in self._certs:
                        raise
                    log.warning("signing certificates could not be refreshed; using the ones held")
            return self._certs


_caches: dict[str, CertCache] = {}
_caches_lock = threading.Lock()


def certificate_cache(url: str) -> CertCache:
    with _caches_lock:
        return _caches.setdefault(url, CertCache(url))


def verify_identity_platform_token(
    token: str, *, project: str, issuer: str | None = None, certs: CertCache
) -> Mapping[str, Any]:
    """Claims of an Identity Platform ID token: RS256 signature by a key in `certs`, `aud` = project,
    `iss` = https://securetoken.google.com/<project> (or `issuer`), `iat`/`exp` (google-auth, with
    CLOCK_SKEW_S), a non-empty `sub` and an `auth_time` not in the future. Tokens not even shaped like
    one are refused before any certificate fetch; a failure to fetch certificates raises
    CertificatesUnavailable (a server error, not the caller's)."""
    from google.auth import exceptions as google_exceptions
    from google.auth import jwt as google_jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    kid = header.get("kid")
    if header.get("alg") != "RS256" or not isinstance(kid, str) or not kid:
        raise AuthError("invalid token: not an RS256 ID token with a key id")
    try:
        claims: Mapping[str, Any] = google_jwt.decode(
            token, certs=certs.for_key(kid), audience=project, clock_skew_in_seconds=CLOCK_SKEW_S
        )
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    want_issuer = issuer or SECURETOKEN_ISSUER + project
    if claims.get("iss") != want_issuer:
        raise AuthError(f"invalid token: issuer is not {want_issuer}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise AuthError("invalid token: no subject")
    auth_time = claims.get("auth_time")
    if auth_time is not None and (
        not isinstance(auth_time, int | float) or auth_time > time.time() + CLOCK_SKEW_S
    ):
        raise AuthError("invalid token: auth_time is in the future")
    return claims


def org_from_identity_platform_token(
    header: str | None, *, project: str | None, issuer: str | None, certs_url: str
) -> str:
    """Cloud: an Identity Platform ID token whose custom claim `org_id` names the organisation."""
    token = bearer_token(header)
    if not project:
        raise AuthError("server has no HEIMDEX_GOOGLE_AUDIENCE (the Identity Platform project) configured")
    return _org(
        verify_identity_platform_token(
            token, project=project, issuer=issuer, certs=certificate_cache(certs_url)
        )
    )


def org_from_header(
    header: str | None, secret: str, *, audience: str | None = None, max_ttl_s: int | None = None
) -> str:
    """The organisation of a valid `Authorization: Bearer <jwt>` header (HS256), or AuthError."""
    token = bearer_token(header)
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": ["exp", "org_id"], "verify_aud": audience is not None},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    default_ttl_s: int = Settings.model_fields["max_token_ttl_s"].default
    check_lifetime(claims, default_ttl_s if max_ttl_s is None else max_ttl_s)
    return _org(claims)
