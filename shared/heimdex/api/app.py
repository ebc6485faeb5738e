"""The HTTP API as a Flask app: served locally by `heimdex serve`, and the same app behind the
search Cloud Function. The organisation always comes from the verified token, never the query.

Requests and responses are pydantic models (models.py). flask-openapi3 validates each request
against its models and generates the OpenAPI 3.1 document from them (served at /openapi.json, with
Swagger UI at /docs); it was chosen because it is Flask itself (a Flask subclass, so the functions
framework, waitress and the existing hooks and error handlers stay as they are), takes pydantic v2
models as they are, and bundles its UI assets in a package (no CDN). The copy of the document in
the repo (openapi.json) is checked against the generated one by tests/test_api_surface.py;
`python -m heimdex.api.app > shared/heimdex/api/openapi.json` writes it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import typing
from collections.abc import Callable
from functools import cache
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from flask import Response, g, redirect, request
from flask_openapi3 import Info, OpenAPI, Tag
from pydantic import SecretStr, ValidationError

from heimdex.api import errors, people, web
from heimdex.api.auth import (
    AuthError,
    CertificatesUnavailable,
    jwt_secret,
    org_from_header,
    org_from_identity_platform_token,
)
from heimdex.api.context import (
    BEARER,
    ApiContext,
    BadCursor,
    decode_cursor,
    dump,
    encode_cursor,
    error_responses,
    fingerprint,
    invalid,
    org,
)
from heimdex.api.models import (
    MAX_K,
    Error,
    Health,
    Hit,
    Job,
    JobPath,
    SearchQuery,
    SearchResponse,
)
from heimdex.api.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, WebSessions
from heimdex.api.signing import MediaSigner, media_key
from heimdex.config import Settings
from heimdex.domain import AssetRef

log = logging.getLogger(__name__)

PUBLIC = {"/healthz", "/openapi.json", "/docs"}
PUBLIC_PREFIXES = ("/docs/", "/v1/media/")  # the UI's assets; media URLs carry their own signature
ERRORS = error_responses(400, 401, 404, 503)
SEARCH = Tag(name="search", description="Find moments by what is said, shown and written")
SYSTEM = Tag(name="system")
JOBS = Tag(name="jobs", description="Indexing progress")


def openapi_document() -> dict[str, Any]:
    """The copy of the document kept in the repo (what tests and clients read without a server)."""
    doc: dict[str, Any] = json.loads((resources.files("heimdex.api") / "openapi.json").read_text())
    return doc


def _version() -> str:
    try:
        return version("heimdex")
    except PackageNotFoundError:
        return "0"


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


def _validation_error(exc: ValidationError) -> Response:
    """A request that does not fit its model: the one JSON error shape, naming the field."""
    problems = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "request"
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    code = "invalid_request" if exc.title.endswith("Body") else "invalid_parameter"
    return errors.error(400, code, "; ".join(problems))


@cache
def _query_fields(view: Callable[..., Any]) -> frozenset[str]:
    """The query parameters a view takes: the fields of its `query` model."""
    target = getattr(view, "__wrapped__", view)
    hints = typing.get_type_hints(target)
    model = hints.get("query")
    return frozenset(model.model_fields) if model else frozenset()


@cache
def _list_fields(view: Callable[..., Any]) -> frozenset[str]:
    """The query parameters a view takes more than once (`?person=a&person=b`): its `query` model's
    list fields, which flask-openapi3 reads with getlist (a JSON schema array, or array or null)."""
    target = getattr(view, "__wrapped__", view)
    model = typing.get_type_hints(target).get("query")
    if model is None:
        return frozenset()
    props = model.model_json_schema().get("properties", {})

    def is_list(schema: dict[str, Any]) -> bool:
        return schema.get("type") == "array" or any(m.get("type") == "array" for m in schema.get("anyOf", []))

    return frozenset(name for name, schema in props.items() if is_list(schema))


def _embedded_reindex(engine: Any) -> Callable[[AssetRef], AssetRef]:
    """Embedded: index the file again in this process (in the background), as the same asset. When
    the file is unchanged its job restarts before the answer, so the asset reads `processing` (with
    its progress) from the first poll on, and a run that cannot start fails it with the reason."""
    from heimdex.core.graph import FIRST

    def reindex(ref: AssetRef) -> AssetRef:
        try:
            same = engine.asset_ref(Path(ref.source), ref.org_id).asset_id == ref.asset_id
        except OSError:
            same = False  # the run reports the file it cannot read; this asset is left as it is
        if same:
            engine.jobs.create(ref, restart=True)

        def run() -> None:
            try:
                engine.index([Path(ref.source)], org=ref.org_id, force=True)
            except Exception as exc:
                log.exception("re-index failed", extra={"source": ref.source})
                if same:
                    engine.jobs.job_failed(ref, FIRST, f"re-index failed: {exc}")

        threading.Thread(target=run, name=f"reindex-{ref.asset_id}", daemon=True).start()
        return ref

    return reindex


def _queued_reindex(engine: Any, dispatcher: Callable[[], Any]) -> Callable[[AssetRef], AssetRef]:
    """Cloud: a new job on the task queues. Cloud Tasks drops a task whose name was used in the last
    hours, and task names come from the job id (that is what makes delivery idempotent), so the run
    is a new asset of the same source: the version label gets a re-index mark, the index stage
    replaces the old asset's rows when it finishes (as it does for an overwrite), and the answer
    names the new asset and job."""
    from heimdex.core.graph import FIRST
    from heimdex.domain import REINDEX_MARK, base_version, make_asset_id

    def reindex(ref: AssetRef) -> AssetRef:
        version = f"{base_version(ref.version)}{REINDEX_MARK}{time.time_ns()}"
        new = AssetRef(ref.org_id, make_asset_id(ref.org_id, ref.source, version), ref.source, version)
        engine.jobs.create(new)
        dispatcher().enqueue(new, FIRST)
        return new

    return reindex


def create_app(engine: Any, *, dispatcher: Callable[[], Any] | None = None) -> OpenAPI:
    """The API over `engine` (Services). Re-index runs in this process when the engine can index
    (the embedded Engine), else as a new job on `dispatcher()` (the cloud's task queue)."""
    settings: Settings = engine.settings
    app = OpenAPI(
        "heimdex",
        static_folder=None,  # /static/ is the web app's (heimdex.api.web), not Flask's default folder
        info=Info(
            title="Heimdex",
            version=_version(),
            description="Search video archives by what is said, shown and written. Every /v1 call but"
            " /v1/media takes `Authorization: Bearer <token>`; errors are `{error, code}`.",
        ),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        doc_prefix="/docs",
        doc_url="/openapi.json",
        validation_error_status=400,
        validation_error_model=Error,
        validation_error_callback=_validation_error,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.install(app.errorhandler)
    org_of = bearer_org(settings)
    secret = jwt_secret(settings) if settings.auth_mode == "hs256" else None
    signer = MediaSigner(media_key(settings, secret), settings.media_url_ttl_s)
    if hasattr(engine, "index"):
        reindex = _embedded_reindex(engine)
    elif dispatcher is not None:
        reindex = _queued_reindex(engine, dispatcher)
    else:

        def reindex(ref: AssetRef) -> AssetRef:
            raise RuntimeError("this deployment cannot re-index: no dispatcher")

    ctx = ApiContext(engine=engine, signer=signer, reindex=reindex)
    sessions = WebSessions(signer.key, settings.web_session_ttl_s)

    @app.before_request
    def authenticate() -> Response | None:
        if request.path in PUBLIC or request.path.startswith(PUBLIC_PREFIXES) or web.is_public(request.path):
            return None
        if request.path == "/v1/session" and request.method == "POST":
            return None  # its body carries the credential (heimdex.api.web)
        header = request.headers.get("Authorization")
        cookie = request.cookies.get(COOKIE)
        if header is None and cookie:
            # The web app's session (heimdex.api.sessions): a state change must carry its CSRF token.
            session = sessions.verify(cookie)
            if session is None:
                return errors.error(401, "unauthorized", "the session has expired; sign in again")
            if request.method not in SAFE_METHODS and not sessions.csrf_ok(
                session, request.headers.get(CSRF_HEADER)
            ):
                return errors.error(
                    403, "csrf", f"a change made with a session needs the {CSRF_HEADER} header"
                )
            g.org_id, g.web_session = session.org_id, session
            return None
        g.org_id, error = org_of(header)
        return error

    @app.before_request
    def known_parameters() -> Response | None:
        """Unknown or repeated query parameters are refused, not ignored: a typo (`?query=`) should
        not silently search for something else, nor `?q=a&q=b` for one of the two. NUL in the path
        or any parameter is refused here, before it reaches the database (PostgreSQL text cannot
        hold it)."""
        texts = [request.path, *(k + v for k, v in request.args.items(multi=True))]
        if any("\x00" in t for t in texts):
            return invalid("parameters must not contain NUL characters")
        if request.url_rule is None or request.path.startswith("/docs") or web.is_public(request.path):
            return None  # the web pages' own query (?q=&person=) is the page script's
        view = app.view_functions.get(request.endpoint or "")
        unknown = set(request.args) - (_query_fields(view) if view else frozenset())
        if unknown:
            return invalid(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        lists = _list_fields(view) if view else frozenset()
        repeated = sorted(k for k in request.args if len(request.args.getlist(k)) > 1 and k not in lists)
        if repeated:
            return invalid(f"repeated query parameter(s): {', '.join(repeated)}")
        return None

    @app.get("/healthz", tags=[SYSTEM], responses={200: Health})
    def healthz() -> Any:
        """Liveness: the process answers."""
        return dump(Health(status="ok"))

    @app.get(
        "/openapi.json",
        tags=[SYSTEM],
        responses={
            200: {
                "description": "this document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    def openapi() -> Any:
        """The OpenAPI 3.1 document of this API, generated from its models."""
        return app.api_doc

    @app.route("/docs")
    def docs() -> Any:
        return redirect("/docs/swagger", 302)

    def run_search(query: SearchQuery | Any, k: int, offset: int) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = engine.search(
            query.q.strip(),
            org=org(),
            k=k,
            source=query.source or None,
            asset=query.asset,
            kind=query.kind,
            after=query.after,
            before=query.before,
            lang=query.lang,
            offset=offset,
            people=[p for p in query.person or [] if p.strip()] or None,
        )
        return results

    def search_fingerprint(query: Any) -> str:
        return fingerprint(
            "search",
            query.q,
            query.source,
            query.asset,
            query.kind,
            query.after,
            query.before,
            query.lang,
            *(query.person or []),
        )

    @app.get(
        "/v1/search",
        tags=[SEARCH],
        security=BEARER,
        responses={200: SearchResponse, **ERRORS},
    )
    def search(query: SearchQuery) -> Any:
        """Hybrid search over speech, on-screen text and pictures; cursor pagination. With
        `person` (repeatable), only scenes where those people are seen: ranked by `q`, or without
        it by asset and time."""
        if not query.q.strip() and not query.person:
            return invalid("q is required (or person)")
        offset = 0
        if query.cursor:
            try:
                offset = int(decode_cursor(query.cursor, search_fingerprint(query)).get("o", 0))
            except (BadCursor, TypeError, ValueError) as exc:
                return invalid(str(exc))
            if not 0 <= offset <= 10 * MAX_K:
                return invalid("cursor is past the last page")
        rows = run_search(query, query.k, offset)  # an unknown person: 404 (heimdex.api.people)
        hits = [hit(r) for r in rows]
        more = len(rows) == query.k and offset + query.k < 10 * MAX_K
        next_cursor = encode_cursor({"o": offset + query.k, "f": search_fingerprint(query)}) if more else None
        return dump(SearchResponse(results=hits, next_cursor=next_cursor))

    def hit(row: dict[str, Any]) -> Hit:
        media = ctx.media_url(org(), row["asset_id"])
        return Hit(
            source=row["source"],
            asset_id=row["asset_id"],
            start=row["start"],
            end=row["end"],
            score=row["score"],
            text=row["text"],
            lang=row.get("lang"),
            thumbnail=row["thumbnail"],
            thumbnail_url=ctx.thumbnail_url(org(), row["asset_id"], row["scene"], row["thumbnail"]),
            media_url=media,
            link=ctx.link(media, row["start"]),
            people=row.get("people", []),
        )

    @app.get("/v1/jobs/<job_id>", tags=[JOBS], security=BEARER, responses={200: Job, **ERRORS})
    def job(path: JobPath) -> Any:
        """An indexing job of the caller's organisation: status and per-stage progress."""
        found = engine.jobs.get_by_id(path.job_id, org_id=org())
        if found is None:
            return errors.error(404, "not_found", "no such job")
        return dump(
            Job(**{k: found.get(k) for k in ("job_id", "asset_id", "source", "status", "error", "stages")})
        )

    from heimdex.api import assets, exports, media, uploads

    assets.register(app, ctx)
    exports.register(app, ctx, run_search)
    media.register(app, ctx)
    uploads.register(app, ctx)
    people.register(app, ctx)  # /v1/people... (heimdex.api.people)
    web.register(app, ctx, sessions, org_of)  # the web app, sign-in, /v1/session (heimdex.api.web)
    return app


def generated_document(engine: Any = None) -> dict[str, Any]:
    """The document as the app generates it (no database needed: routes only)."""

    class _Offline:
        settings = Settings(
            jwt_secret="x" * 32, home=Path("/nonexistent-heimdex-home"), media_url_key=SecretStr("k" * 32)
        )

    app = create_app(engine or _Offline())
    return app.api_doc


if __name__ == "__main__":
    json.dump(generated_document(), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
