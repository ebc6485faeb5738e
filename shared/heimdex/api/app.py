"""The HTTP API as a Flask app: served locally by `heimdex serve`, and the same app behind the
search Cloud Function. The organisation always comes from the verified token, never the query."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from flask import Flask, Response, g, request

from heimdex.api import errors, people
from heimdex.api.auth import (
    AuthError,
    CertificatesUnavailable,
    jwt_secret,
    org_from_header,
    org_from_identity_platform_token,
)
from heimdex.config import Settings
from heimdex.domain import JOB_ID_RE
from heimdex.vectorstore.people import NoSuchPerson

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
MAX_SOURCE_CHARS = 2048
MAX_K = 100
MAX_PEOPLE = 10
MAX_PERSON_CHARS = 200
K_RE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: no sign, blanks, '_' or other scripts' digits
PUBLIC = {"/healthz", "/openapi.json"}
QUERY_PARAMETERS = {"/v1/search": {"q", "k", "source", "person"}}  # routes not listed take none
REPEATABLE = {"person"}  # query parameters that may be given more than once


def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((resources.files("heimdex.api") / "openapi.json").read_text())
    return doc


def _invalid(message: str) -> Response:
    return errors.error(400, "invalid_parameter", message)


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
            org = org_from_header(
                header, secret, audience=settings.jwt_audience, max_ttl_s=settings.max_token_ttl_s
            )
            return org, None
        except AuthError as exc:
            return "", errors.error(401, "unauthorized", str(exc))
        except CertificatesUnavailable as exc:
            resp = errors.error(503, "unavailable", f"cannot verify tokens now: {exc}")
            resp.headers["Retry-After"] = "5"
            return "", resp

    return org_of


def create_app(engine: Any) -> Flask:
    app = Flask("heimdex")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.install(app.errorhandler)
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
        """Unknown or repeated query parameters are refused, not ignored: a typo (`?query=`) should
        not silently search for something else, nor `?q=a&q=b` for one of the two. NUL in the path
        or any parameter is refused here, before it reaches the database (PostgreSQL text cannot
        hold it)."""
        texts = [request.path, *(k + v for k, v in request.args.items(multi=True))]
        if any("\x00" in t for t in texts):
            return _invalid("parameters must not contain NUL characters")
        rule = request.url_rule.rule if request.url_rule else None
        unknown = set(request.args) - QUERY_PARAMETERS.get(rule or "", set())
        if rule and unknown:
            return _invalid(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        repeated = sorted(k for k in request.args if len(request.args.getlist(k)) > 1 and k not in REPEATABLE)
        if repeated:
            return _invalid(f"repeated query parameter(s): {', '.join(repeated)}")
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
        people = [p for p in request.args.getlist("person") if p.strip()]
        if not q and not people:
            return _invalid("q is required (or person)")
        if len(people) > MAX_PEOPLE or any(len(p) > MAX_PERSON_CHARS for p in people):
            return _invalid(f"at most {MAX_PEOPLE} person parameters of {MAX_PERSON_CHARS} characters")
        if len(raw_q) > MAX_QUERY_CHARS:  # the documented limit is on the parameter as sent
            return _invalid(f"q is longer than {MAX_QUERY_CHARS} characters")
        if source and len(source) > MAX_SOURCE_CHARS:
            return _invalid(f"source is longer than {MAX_SOURCE_CHARS} characters")
        raw_k = request.args.get("k", "10")
        if not K_RE.fullmatch(raw_k):
            return _invalid("k must be an integer written with the digits 0-9")
        k = int(raw_k)
        if not 1 <= k <= MAX_K:
            return _invalid(f"k must be between 1 and {MAX_K}")
        try:
            results = engine.search(q, org=g.org_id, k=k, source=source, people=people or None)
        except NoSuchPerson as exc:
            return errors.error(404, "not_found", f"person: {exc}")
        return {"results": results}

    @app.get("/v1/assets")
    def assets() -> Any:
        return {"assets": engine.assets(org=g.org_id)}

    @app.get("/v1/jobs/<job_id>")
    def job(job_id: str) -> Any:
        if not JOB_ID_RE.fullmatch(job_id):
            return _invalid("job_id is not a job id (job-<24 hex digits>)")
        found = engine.jobs.get_by_id(job_id, org_id=g.org_id)
        if found is None:
            return errors.error(404, "not_found", "no such job")
        return {k: found.get(k) for k in ("job_id", "asset_id", "source", "status", "error", "stages")}

    people.register(app, engine)  # /v1/people... (heimdex.api.people)
    return app
