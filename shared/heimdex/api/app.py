"""The HTTP API as a Flask app: served locally by `heimdex serve`, and the same app behind the
search Cloud Function. The organisation always comes from the verified token, never the query."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from flask import Flask, Response, g, jsonify, request

from heimdex.api.auth import AuthError, jwt_secret, org_from_header

MAX_QUERY_CHARS = 1000
MAX_K = 100
PUBLIC = {"/healthz", "/openapi.json"}


def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((resources.files("heimdex.api") / "openapi.json").read_text())
    return doc


def _error(status: int, message: str) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="heimdex"'
    return resp


def create_app(engine: Any) -> Flask:
    app = Flask("heimdex")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    secret = jwt_secret(engine.settings)
    spec = openapi_document()

    @app.before_request
    def authenticate() -> Response | None:
        if request.path in PUBLIC:
            return None
        try:
            g.org_id = org_from_header(
                request.headers.get("Authorization"), secret, audience=engine.settings.jwt_audience
            )
        except AuthError as exc:
            return _error(401, str(exc))
        return None

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/openapi.json")
    def openapi() -> Any:
        return spec

    @app.get("/v1/search")
    def search() -> Any:
        q = request.args.get("q", "").strip()
        source = request.args.get("source") or None
        if "\x00" in q or (source and "\x00" in source):
            return _error(400, "parameters must not contain NUL characters")
        if not q:
            return _error(400, "q is required")
        if len(q) > MAX_QUERY_CHARS:
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

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return _error(404, "not found")

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return _error(405, "method not allowed")

    return app
