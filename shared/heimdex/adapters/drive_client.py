"""The Drive v3 client: built from the discovery document shipped with google-api-python-client,
always with credentials (an organisation's own, or the deployment's account for mapped folders).

`drive_api_root` moves every endpoint under a local server (the fake Drive of the tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient
import httplib2
from google.auth.exceptions import RefreshError
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from heimdex.config import Settings

SCOPE = "https://www.googleapis.com/auth/drive.readonly"
GOOGLE_ROOT = "https://www.googleapis.com/"
HTTP_TIMEOUT_S = 60
NUM_RETRIES = 3  # 429, 5xx and rate-limit 403s, with backoff (the client's own retry)


@cache
def _document_text(root: str | None) -> str:
    """The drive v3 document shipped with the client; with `root`, every endpoint moved under it."""
    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "drive.v3.json"
    if root is None:
        return path.read_text()
    doc: dict[str, Any] = json.loads(path.read_text())
    root = root.rstrip("/") + "/"
    doc["rootUrl"] = doc["mtlsRootUrl"] = root
    doc["baseUrl"] = root + doc["servicePath"]
    return json.dumps(doc)


def _request_builder(make_http: Callable[[], Any]) -> Callable[..., HttpRequest]:
    """httplib2 connections are not thread-safe: give every request its own."""

    def build_request(_http: Any, *args: Any, **kwargs: Any) -> HttpRequest:
        return HttpRequest(make_http(), *args, **kwargs)

    return build_request


def drive_service(settings: Settings, credentials: Any) -> Any:
    """A Drive v3 client whose every request carries `credentials` (refreshed by google-auth when
    they expire), against Google or `drive_api_root`."""
    from google_auth_httplib2 import AuthorizedHttp

    def make_http() -> AuthorizedHttp:
        return AuthorizedHttp(credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_S))

    return build_from_document(
        _document_text(settings.drive_api_root),
        http=make_http(),
        requestBuilder=_request_builder(make_http),
    )


def execute(request: Any) -> dict[str, Any]:
    result: dict[str, Any] = request.execute(num_retries=NUM_RETRIES)
    return result or {}


def status_of(exc: HttpError) -> int:
    return int(exc.resp.status)


def invalid_grant(exc: BaseException) -> str | None:
    """Google's reason when a refresh failed because the grant is gone for good (`invalid_grant`:
    revoked by the user or an administrator, expired, or the account removed); None otherwise."""
    if not isinstance(exc, RefreshError):
        return None
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    text = str(exc.args[0]) if exc.args else ""
    if details.get("error") == "invalid_grant" or text.startswith("invalid_grant"):
        return text or "invalid_grant"
    return None
