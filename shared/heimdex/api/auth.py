"""Bearer tokens: HS256 JWTs carrying `org_id` and `exp` (the embedded default).

Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail verification. When
HEIMDEX_JWT_SECRET is unset, a random secret is made once and kept in HEIMDEX_HOME (mode 0600),
and `heimdex token` signs with the same one.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from heimdex.config import MIN_SECRET_BYTES, Settings
from heimdex.domain import is_valid_org

ALGORITHM = "HS256"
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
    """Claims of a Google-signed ID token (RS256): signature, expiry, issuer and audience checked by
    google-auth. Tokens that are not even shaped like one are refused before any certificate fetch;
    a failure to fetch Google's certificates propagates (a server error, not the caller's)."""
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


def org_from_google_token(header: str | None, *, audience: str | None) -> str:
    """Cloud: a Google-signed ID token (Identity Platform) whose custom claim `org_id` names the
    organisation."""
    token = bearer_token(header)
    if not audience:
        raise AuthError("server has no HEIMDEX_GOOGLE_AUDIENCE configured")
    return _org(verify_google_id_token(token, audience))


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
