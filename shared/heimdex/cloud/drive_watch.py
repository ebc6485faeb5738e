"""The drive_watch function as a Flask app: Drive push notifications, channel renewal, registration,
and the sweep of stuck jobs.

- `POST /notifications`: Drive's push. Authenticated by channel id + token (the watch store knows
  them); the changes since the stored page token are ingested or removed.
- `POST /renew`: Cloud Scheduler, a few times a day. Drive channels last at most a week and have no
  renew call: new channels are opened before the old expire, then the old are stopped.
- `POST /sweep`: Cloud Scheduler, every few minutes: jobs stalled by the rule of `heimdex.core.sweep`
  end `failed` (`Services.sweep`). It lives here because this is the function Cloud Scheduler already
  calls with a verified OIDC token, with the job store and the index at hand.
- `POST /v1/watches {"folder_id"}` / `DELETE /v1/watches/<folder_id>` / `GET /v1/watches`: an
  organisation (from its Bearer token, as for the search API) starts or stops watching a folder,
  shared drives included, or lists its watches. It may watch only a folder it has shown it can read
  with credentials of its own (403), or one the operator mapped to it (a folder mapped to another
  organisation: 409): `heimdex.adapters.drive_access`.
- `/v1/drive/consent`, `/v1/drive/callback`, `/v1/drive/grant`: connecting the organisation's own
  Drive (`heimdex.cloud.drive_consent`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, request

from heimdex.adapters.drive import (
    AccessDenied,
    DriveWatcher,
    GrantRevoked,
    NotificationRefused,
    Removal,
    Upsert,
    WatchStopped,
    validate_folder_id,
)
from heimdex.api import errors
from heimdex.api.app import bearer_org
from heimdex.cloud.drive_consent import install_consent_routes
from heimdex.cloud.ingest import ingest, remove
from heimdex.cloud.service import verify_task_token
from heimdex.core.dispatch import Dispatcher

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024  # a registration is one small JSON object; notifications have no body


def scheduler_audience(settings: Any, path: str) -> str:
    """The OIDC audience Cloud Scheduler signs for: this function's public URL + `path` (`/renew`,
    `/sweep`). Taken from configuration, not the request (behind Cloud Run the request URL is plain
    http)."""
    base = (settings.drive_webhook_url or "").removesuffix("/notifications")
    if not base:
        raise PermissionError("HEIMDEX_DRIVE_WEBHOOK_URL is not configured")
    return f"{base}{path}"


def scheduler_refusal(settings: Any, path: str) -> Any:
    """None for a call Cloud Scheduler signed for this path (or when verification is off); else a 401."""
    if not settings.verify_task_tokens:
        return None
    try:
        verify_task_token(request.headers.get("Authorization"), scheduler_audience(settings, path))
    except PermissionError as exc:
        return errors.error(401, "unauthorized", str(exc))
    return None


def create_drive_app(engine: Any, dispatcher: Dispatcher, watcher: Callable[[], DriveWatcher]) -> Flask:
    """`watcher` makes (or returns) the Drive watcher on first use, so that /sweep never depends on
    the Drive client."""
    app = Flask("heimdex-drive-watch")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    errors.install(app.errorhandler)
    org_of = bearer_org(engine.settings)

    @app.post("/notifications")
    def notifications() -> Any:
        try:
            changes = watcher().handle_notification(request.headers)
        except NotificationRefused as exc:
            log.warning("drive notification refused", extra={"reason": str(exc)})
            return errors.error(403, "forbidden", str(exc))
        except WatchStopped as exc:  # acknowledged, so that Drive does not retry; nothing listed
            log.warning("drive notification for a stopped watch", extra=exc.watch.public())
            return {"changes": [], "status": exc.watch.status, "watch": exc.watch.public()}
        done: list[dict[str, Any]] = []
        for change in changes:
            if isinstance(change, Upsert):
                result = ingest(
                    engine,
                    dispatcher,
                    org_id=change.org_id,
                    source=change.uri,
                    version=change.version,
                    size=change.size,
                    name=change.name,
                    content_type=None,
                )
                done.append({"source": change.uri, "status": result.status, "reason": result.reason})
            elif isinstance(change, Removal):
                removed = remove(engine, org_id=change.org_id, source=change.uri)
                done.append({"source": change.uri, "status": "removed", "assets": removed})
        return {"changes": done}

    @app.post("/renew")
    def renew() -> Any:
        refused = scheduler_refusal(engine.settings, "/renew")
        return refused or {"renewed": watcher().renew()}

    @app.post("/sweep")
    def sweep() -> Any:
        refused = scheduler_refusal(engine.settings, "/sweep")
        if refused:
            return refused
        swept = engine.sweep()
        for stall in swept:
            log.warning("stalled job failed", extra=stall.as_dict())
        return {"swept": [stall.as_dict() for stall in swept]}

    @app.post("/v1/watches")
    def register() -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        body = request.get_json(silent=True)
        folder_id = body.get("folder_id") if isinstance(body, dict) else None
        if not isinstance(folder_id, str) or not folder_id:
            return errors.error(400, "invalid_request", 'expected a JSON object {"folder_id": "<id>"}')
        try:
            validate_folder_id(folder_id)
        except ValueError as exc:
            return errors.error(400, "invalid_parameter", str(exc))
        try:
            watch = watcher().register(org, folder_id)
        except AccessDenied as exc:
            log.warning(
                "drive watch refused", extra={"org_id": org, "folder_id": folder_id, "code": exc.code}
            )
            return errors.error(exc.status, exc.code, str(exc))
        except GrantRevoked as exc:
            return errors.error(403, "forbidden", exc.reason)
        except ValueError as exc:
            return errors.error(400, "invalid_parameter", str(exc))
        return watch.public(), 201

    @app.get("/v1/watches")
    def list_watches() -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        return {"watches": [w.public() for w in watcher().watches(org)]}

    @app.delete("/v1/watches/<folder_id>")
    def unregister(folder_id: str) -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        try:
            validate_folder_id(folder_id)
        except ValueError as exc:
            return errors.error(400, "invalid_parameter", str(exc))
        if not watcher().unregister(org, folder_id):
            return errors.error(404, "not_found", "not watched")
        return "", 204

    install_consent_routes(app, engine.settings, org_of, watcher)
    return app
