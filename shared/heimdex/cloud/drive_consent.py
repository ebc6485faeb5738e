"""How an organisation connects its own Drive (OAuth 2.0, web-server flow), part of drive_watch:

- `GET /v1/drive/consent` (the organisation's Bearer token): the Google authorization URL to open in
  a browser, signed in as a user of the organisation who can read the folders to watch. Its `state`
  is signed and names the organisation; it expires after HEIMDEX_DRIVE_CONSENT_TTL_S.
- `GET /v1/drive/callback?code&state`: where Google sends that browser back. The organisation comes
  from the verified `state` only; the code is exchanged for a refresh token, which is kept encrypted
  (`drive_auth`). A new consent replaces the organisation's grant.
- `GET /v1/drive/grant`: whether the organisation has a grant (`active`, `revoked` with the reason,
  or `none`); never the token.
- `DELETE /v1/drive/grant`: disconnect: the organisation's delegated watches are stopped (their
  channels closed while the grant still works), the grant is revoked at Google and erased here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, Response, request

from heimdex.adapters.drive import DISCONNECTED, DriveWatcher
from heimdex.adapters.drive_auth import (
    ConsentFailed,
    ConsentState,
    Grant,
    InvalidState,
    NotConfigured,
    OAuthClient,
    TokenCipher,
)
from heimdex.api import errors
from heimdex.config import Settings

log = logging.getLogger(__name__)
CALLBACK_PATH = "/v1/drive/callback"


def public_url(settings: Settings, path: str) -> str:
    """This function's public URL + `path`, from configuration (HEIMDEX_DRIVE_WEBHOOK_URL), never
    from the request."""
    base = (settings.drive_webhook_url or "").removesuffix("/notifications")
    if not base:
        raise NotConfigured("HEIMDEX_DRIVE_WEBHOOK_URL is not configured")
    return f"{base}{path}"


def _not_configured(exc: NotConfigured) -> Response:
    return errors.error(501, "not_configured", str(exc))


def install_consent_routes(
    app: Flask,
    settings: Settings,
    org_of: Callable[[str | None], tuple[str, Response | None]],
    watcher: Callable[[], DriveWatcher],
) -> None:
    def oauth() -> OAuthClient:
        return OAuthClient(settings, public_url(settings, CALLBACK_PATH))

    def states() -> ConsentState:
        return ConsentState(TokenCipher.from_settings(settings).state_key, ttl_s=settings.drive_consent_ttl_s)

    def grants() -> Any:
        store = watcher().access.grants
        if store is None:
            raise NotConfigured("HEIMDEX_DRIVE_TOKEN_KEY is not set: Drive grants cannot be kept")
        return store

    @app.get("/v1/drive/consent")
    def consent() -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        try:
            url = oauth().authorization_url(states().sign(org))
        except NotConfigured as exc:
            return _not_configured(exc)
        return {"org_id": org, "authorization_url": url, "expires_in_s": settings.drive_consent_ttl_s}

    @app.get(CALLBACK_PATH)
    def callback() -> Any:
        try:
            org = states().verify(request.args.get("state", ""))
        except NotConfigured as exc:
            return _not_configured(exc)
        except InvalidState as exc:
            return errors.error(400, "invalid_state", str(exc))
        refused = request.args.get("error")
        if refused:
            return errors.error(400, "consent_refused", f"Drive access was not granted ({refused[:100]})")
        code = request.args.get("code", "")
        if not code or "\x00" in code:
            return errors.error(400, "invalid_parameter", "code is required")
        try:
            token = oauth().exchange(code)
            store = grants()
        except NotConfigured as exc:
            return _not_configured(exc)
        except ConsentFailed as exc:
            return errors.error(400, "consent_failed", str(exc))
        except requests.RequestException as exc:
            log.warning("token endpoint unavailable", extra={"error": str(exc)})
            return errors.error(503, "unavailable", "Google's token endpoint did not answer; try again")
        grant = Grant.new(org, token.refresh_token, token.scope)
        # A replaced grant is not revoked at Google: revoking one refresh token there can revoke the
        # user's whole consent to this client, the new grant included.
        store.put(grant)
        watcher().access.forget(org)
        log.info("Drive connected", extra={"org_id": org, "scope": grant.scope})
        return {"org_id": org, "status": "connected", "scope": grant.scope}

    @app.get("/v1/drive/grant")
    def grant_status() -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        found = watcher().access.grant(org)
        return found.public() if found else {"org_id": org, "status": "none"}

    @app.delete("/v1/drive/grant")
    def disconnect() -> Any:
        org, error = org_of(request.headers.get("Authorization"))
        if error:
            return error
        w = watcher()
        found = w.access.grant(org)
        if found is None or found.status != "active":
            return errors.error(404, "not_found", f"organisation {org} has no active Drive grant")
        stopped = w.revoke_org(org, DISCONNECTED, close=True)
        at_google = False
        try:
            at_google = oauth().revoke(found.refresh_token)
        except (NotConfigured, requests.RequestException) as exc:
            log.warning("revoking the grant at Google failed", extra={"org_id": org, "error": str(exc)})
        grants().mark_revoked(org, found.grant_id, DISCONNECTED)
        w.access.forget(org)
        log.info("Drive disconnected", extra={"org_id": org, "revoked_at_google": at_google})
        return {
            "org_id": org,
            "status": "revoked",
            "revoked_at_google": at_google,
            "watches_stopped": [watch.folder_id for watch in stopped],
        }
