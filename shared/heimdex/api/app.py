"""The HTTP API as a Flask app: served locally by `heimdex serve`, and the same app behind the
search Cloud Function. The organisation always comes from the verified token, never the query."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import psycopg
from flask import Flask, Response, g, jsonify, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import MethodNotAllowed

from heimdex.api.auth import (
    AuthError,
    CertificatesUnavailable,
    jwt_secret,
    org_from_header,
    org_from_identity_platform_token,
)
from heimdex.config import Settings

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
MAX_K = 100
PUBLIC = {"/healthz", "/openapi.json"}
QUERY_PARAMETERS = {"/v1/search": {"q", "k", "source"}}  # routes not listed take none


def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((resources.files("heimdex.api") / "openapi.json").read_text())
    return doc


def _error(status: int, message: str) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="heimdex"'
    return resp


def bearer_org(settings: Settings) -> Callable[[str | None], tuple[str, Response | None]]:
    """A verifier for `Authorization` headers: (org_id, None), or ("", a 401 response; 503 when the
    signing certificates cannot be fetched). HS256 with the configured secret locally; Identity
    Platform ID tokens in the cloud (auth.py)."""
    secret = jwt_secret(settings) if settings.auth_mode == "hs256" else ""
    if settings.auth_mode == "google":
        log.warning(
            "HEIMDEX_AUTH_MODE=google is now called identity_platform; the old name goes in a release"
        )

    def org_of(header: str | None) -> tuple[str, Response | None]:
        try:
            if settings.auth_mode in ("identity_platform", "google"):
                org = org_from_identity_platform_token(
                    header,
                    project=settings.google_audience,
                    issuer=settings.auth_issuer,
                    certs_url=settings.auth_certs_url,
                )
                return org, None
            return org_from_header(header, secret, audience=settings.jwt_audience), None
        except AuthError as exc:
            return "", _error(401, str(exc))
        except CertificatesUnavailable as exc:
            resp = _error(503, f"cannot verify tokens now: {exc}")
            resp.headers["Retry-After"] = "5"
            return "", resp

    return org_of


def create_app(engine: Any) -> Flask:
    app = Flask("heimdex")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    org_of = bearer_org(engine.settings)
    spec = openapi_document()

    @app.before_request
    def authenticate() -> Response | None:
        if request.path in PUBLIC:
            return None
        g.org_id, error = org_of(request.headers.get("Authorization"))
        return error

    @app.before_request
    def known_parameters() -> Response | None:
        """Unknown query parameters are refused, not ignored: a typo (`?query=`) should not
        silently search for something else."""
        rule = request.url_rule.rule if request.url_rule else None
        unknown = set(request.args) - QUERY_PARAMETERS.get(rule or "", set())
        if rule and unknown:
            return _error(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        return None

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/openapi.json")
    def openapi() -> Any:
        return spec

    @app.get("/v1/search")
    def search() -> Any:
        raw_q = request.args.get("q", "")
        q = raw_q.strip()
        source = request.args.get("source") or None
        if "\x00" in raw_q or (source and "\x00" in source):
            return _error(400, "parameters must not contain NUL characters")
        if not q:
            return _error(400, "q is required")
        if len(raw_q) > MAX_QUERY_CHARS:  # the documented limit is on the parameter as sent
            return _error(400, f"q is longer than {MAX_QUERY_CHARS} characters")
        try:
            k = int(request.args.get("k", "10"))
        except ValueError:
            return _error(400, "k must be an integer")
        if not 1 <= k <= MAX_K:
            return _error(400, f"k must be between 1 and {MAX_K}")
        results = engine.search(q, org=g.org_id, k=k, source=source)
        return {"results": results}

    @app.get("/v1/assets")
    def assets() -> Any:
        return {"assets": engine.assets(org=g.org_id)}

    @app.get("/v1/jobs/<job_id>")
    def job(job_id: str) -> Any:
        found = engine.jobs.get_by_id(job_id, org_id=g.org_id)
        if found is None:
            return _error(404, "no such job")
        return {k: found.get(k) for k in ("job_id", "asset_id", "source", "status", "error", "stages")}

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return _error(404, "not found")

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(_: Exception) -> Response:
        # The database is restarting or failing over; the pool reconnects with backoff. A client
        # should retry, not treat it as a server bug.
        resp = _error(503, "the database is unavailable; retry shortly")
        resp.headers["Retry-After"] = "2"
        return resp

    @app.errorhandler(405)
    def not_allowed(exc: MethodNotAllowed) -> Response:
        resp = _error(405, "method not allowed")
        resp.headers["Allow"] = ", ".join(exc.valid_methods or [])  # RFC 9110
        return resp

    return app
