"""The web app (issue 16), served by the API app itself: the page shell for every page route,
its static files (heimdex/web/static, package data, no build step), the one-time sign-in link
(`/signin?token=`), `/v1/session` (who the cookie or token is; Google sign-in's exchange; sign-out),
and the security headers: a strict Content-Security-Policy on every HTML response.

The pages use only the public /v1 API, authenticated by the session cookie (heimdex.api.sessions).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Response, g, jsonify, redirect, request, send_from_directory
from flask_openapi3 import OpenAPI, Tag
from werkzeug.wrappers import Response as BaseResponse

from heimdex.api.context import BEARER, ApiContext, dump, error_responses
from heimdex.api.models import SessionBody, SessionInfo, SignedOut
from heimdex.api.sessions import COOKIE, WebSession, WebSessions
from heimdex.config import Settings
from heimdex.vectorstore import signin

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("heimdex") / "web" / "static"))
# Paths that answer the page shell (the script routes them, js/routes.js); they take any query.
PAGES = ("/", "/watch/<asset_id>", "/library", "/people", "/people/<int:person_id>")
PUBLIC_PATHS = frozenset({"/signin", "/web/config.json"})
PAGE_RE = re.compile(r"^/(watch/[^/]+|library|people(/\d+)?)?$")
SESSION = Tag(name="session", description="Browser sessions of the web app")
GIS_ORIGIN = "https://accounts.google.com"
ERRORS = error_responses(400, 401, 403)
IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com"
STATIC_MAX_AGE_S = 300  # a new release's files reach open browsers within minutes (ETag revalidates)


def is_public(path: str) -> bool:
    """Web paths served without credentials: the shell, its files, the sign-in link."""
    return path in PUBLIC_PATHS or path.startswith("/static/") or PAGE_RE.match(path) is not None


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def google_configured(settings: Settings) -> bool:
    return bool(settings.web_google_client_id and settings.web_identity_api_key)


def media_origins(settings: Settings) -> list[str]:
    """Origins besides 'self' that images and video load from: the public URL signed media URLs
    start with, the bucket hosts that video redirects to (signed gs:// and s3:// URLs), and any
    configured ones."""
    found: list[str] = []
    if settings.public_url and (o := _origin(settings.public_url)):
        found.append(o)
    if any(b.startswith("gs://") for b in settings.source_buckets) or settings.upload_bucket:
        found.append("https://storage.googleapis.com")
    if settings.s3_endpoint_url and (o := _origin(settings.s3_endpoint_url)):
        found.append(o)
    found += settings.web_media_origins
    return list(dict.fromkeys(found))


def content_security_policy(settings: Settings) -> str:
    media = " ".join(["'self'", *media_origins(settings)])
    script, style, connect, frame = "'self'", "'self'", "'self'", "'none'"
    if settings.upload_bucket or any(b.startswith("gs://") for b in settings.source_buckets):
        connect += " https://storage.googleapis.com"  # the library page PUTs uploads to signed URLs
    if google_configured(settings):
        script += f" {GIS_ORIGIN}/gsi/client"
        style += f" {GIS_ORIGIN}/gsi/style"
        connect += f" {GIS_ORIGIN}/gsi/ {IDENTITY_TOOLKIT}"
        frame = f"{GIS_ORIGIN}/gsi/"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script}",
            f"style-src {style}",
            f"img-src {media} data:",
            f"media-src {media}",
            f"connect-src {connect}",
            f"frame-src {frame}",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ]
    )


# The API reference (Swagger UI, /docs) starts itself with inline script: it gets a policy of its
# own that allows that, and still nothing from other origins.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def new_signin_link(db: Any, org_id: str, base: str, ttl_s: int) -> str:
    """A one-time sign-in link for `org_id` at `base` (http://127.0.0.1:8080), valid `ttl_s` s."""
    with db.org_tx(org_id) as conn:
        token = signin.create(conn, org_id, ttl_s)
    return f"{base.rstrip('/')}/signin?{urlencode({'token': token})}"


def _secure() -> bool:
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or proto == "https"


def set_session_cookie(resp: BaseResponse, value: str, made: WebSession, sessions: WebSessions) -> None:
    resp.set_cookie(
        COOKIE,
        value,
        max_age=sessions.ttl_s,
        path="/",
        httponly=True,
        secure=_secure(),
        samesite="Lax",  # Strict would drop the cookie on a link followed from mail or chat
    )


def _page(title: str, text: str, status: int) -> Response:
    """A small server-made HTML page (sign-in link outcomes): escaped text, the app's stylesheet."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)} · Heimdex</title><link rel="stylesheet" href="/static/app.css">'
        '</head><body><main id="main"><section class="signin">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        "<p>Print a new link with <code>heimdex token --login --org ORG</code>"
        " (or restart <code>heimdex serve</code>).</p>"
        "</section></main></body></html>"
    )
    return Response(body, status=status, mimetype="text/html")


def register(
    app: OpenAPI,
    ctx: ApiContext,
    sessions: WebSessions,
    org_of: Callable[[str | None], tuple[str, Response | None]],
) -> None:
    """Add the web routes; `org_of` verifies an Authorization header (app.bearer_org)."""
    engine = ctx.engine
    settings: Settings = engine.settings
    csp = content_security_policy(settings)

    def shell(**_: Any) -> Response:
        resp = send_from_directory(STATIC, "index.html", max_age=0)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    for i, rule in enumerate(PAGES):
        app.add_url_rule(rule, f"web_page_{i}", shell, methods=["GET"])

    @app.route("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name, max_age=STATIC_MAX_AGE_S)

    @app.route("/web/config.json")
    def web_config() -> Response:
        google = (
            {"client_id": settings.web_google_client_id, "api_key": settings.web_identity_api_key}
            if google_configured(settings)
            else None
        )
        # Whether this browser's cookie holds a live session: the page asks here first, so a visitor
        # who is not signed in gets the sign-in page without a failed (401) request in the console.
        signed_in = sessions.verify(request.cookies.get(COOKIE, "")) is not None
        resp = jsonify({"google": google, "signed_in": signed_in})
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.route("/signin")
    def signin_link() -> BaseResponse:
        token = request.args.get("token", "")
        org_id = signin.org_of(token)
        if org_id is None:
            return _page("Not a sign-in link", "This address is not a complete sign-in link.", 400)
        with engine.db.org_tx(org_id) as conn:
            outcome = signin.redeem(conn, token)
        if outcome is signin.Redeemed.USED:
            return _page(
                "Link already used", "Each sign-in link works once, and this one has been used.", 410
            )
        if outcome is signin.Redeemed.EXPIRED:
            return _page("Link expired", "This sign-in link has expired.", 410)
        value, made = sessions.issue(org_id)
        resp = redirect("/", 303)
        set_session_cookie(resp, value, made, sessions)
        log.info("signed in by link", extra={"org_id": org_id})
        return resp

    @app.get("/v1/session", tags=[SESSION], security=BEARER, responses={200: SessionInfo, **ERRORS})
    def session_info() -> Any:
        """Who this request is: the organisation, and for a cookie session its CSRF token."""
        web: WebSession | None = g.get("web_session")
        if web is None:
            return dump(SessionInfo(org_id=g.org_id, via="bearer", csrf_token=None, expires_at=None))
        return dump(
            SessionInfo(
                org_id=web.org_id, via="cookie", csrf_token=sessions.csrf_token(web), expires_at=web.exp
            )
        )

    @app.post("/v1/session", tags=[SESSION], responses={200: SessionInfo, **ERRORS})
    def session_start(body: SessionBody) -> Any:
        """Sign in a browser: an ID token the API accepts (Google sign-in through Identity Platform in
        the cloud; an HS256 API token embedded) becomes a session cookie."""
        org_id, error = org_of(f"Bearer {body.id_token}")
        if error is not None:
            return error
        value, made = sessions.issue(org_id)
        resp = dump(
            SessionInfo(
                org_id=org_id, via="cookie", csrf_token=sessions.csrf_token(made), expires_at=made.exp
            )
        )
        set_session_cookie(resp, value, made, sessions)
        return resp

    @app.delete("/v1/session", tags=[SESSION], security=BEARER, responses={200: SignedOut, **ERRORS})
    def session_end() -> Any:
        """Sign out: the session cookie is cleared."""
        resp = dump(SignedOut(signed_out=True))
        resp.delete_cookie(COOKIE, path="/", httponly=True, secure=_secure(), samesite="Lax")
        return resp

    @app.after_request
    def security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            resp.headers["Content-Security-Policy"] = DOCS_CSP if request.path.startswith("/docs") else csp
            resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    del static_file, web_config, signin_link, session_info, session_start, session_end, security_headers
