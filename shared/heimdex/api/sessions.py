"""Browser sessions of the web app: a signed cookie in place of a bearer token.

The cookie holds an HS256 JWT (audience `heimdex-web`) with the organisation, an expiry and a random
session id, signed with a key derived from the media URL key (so every instance that can sign media
URLs verifies sessions, with no state to share). It is set HttpOnly and SameSite=Lax (Secure on
https), by the one-time sign-in link (`/signin?token=`) or by `POST /v1/session` with an ID token
(Google sign-in in the cloud). A state change (anything but GET/HEAD/OPTIONS) made with the cookie
must carry `X-CSRF-Token`: an HMAC of the session id that `GET /v1/session` hands to the page's
script; another site's form or fetch cannot read it. Signing out clears the cookie (sessions are
not listed server-side; one lives at most HEIMDEX_WEB_SESSION_TTL_S).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

COOKIE = "heimdex_session"
AUDIENCE = "heimdex-web"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class WebSession:
    org_id: str
    sid: str
    exp: int


class WebSessions:
    def __init__(self, media_key: bytes, ttl_s: int) -> None:
        self.key = hmac.new(media_key, b"heimdex web sessions", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def issue(self, org_id: str, now: float | None = None) -> tuple[str, WebSession]:
        """A new session of `org_id`: the cookie value and what it holds."""
        iat = int(time.time() if now is None else now)
        made = WebSession(org_id=org_id, sid=secrets.token_urlsafe(16), exp=iat + self.ttl_s)
        claims = {"org_id": made.org_id, "sid": made.sid, "iat": iat, "exp": made.exp, "aud": AUDIENCE}
        return jwt.encode(claims, self.key, algorithm="HS256"), made

    def verify(self, value: str) -> WebSession | None:
        """The session a cookie holds, if it is ours, intact and not expired."""
        try:
            claims = jwt.decode(
                value, self.key, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["exp", "sid"]}
            )
        except jwt.PyJWTError:
            return None
        org_id, sid, exp = claims.get("org_id"), claims.get("sid"), claims.get("exp")
        if not (isinstance(org_id, str) and isinstance(sid, str) and isinstance(exp, int)):
            return None
        return WebSession(org_id=org_id, sid=sid, exp=exp)

    def csrf_token(self, session: WebSession) -> str:
        mac = hmac.new(self.key, b"csrf\n" + session.sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def csrf_ok(self, session: WebSession, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(self.csrf_token(session), header or "")
