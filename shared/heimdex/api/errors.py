"""One JSON error shape for every HTTP entry point (search API, drive_watch, stage services, and the
functions-framework apps around the Cloud Functions):

    {"error": "<readable message>", "code": "<stable code>"}

`error` is the message clients had before codes existed; `code` is what a program branches on. Codes:

| code | status | meaning |
|---|---|---|
| `invalid_parameter` | 400 | a query or path parameter: unknown, repeated, malformed, too long, NUL |
| `invalid_request` | 400 | a body that is not the JSON the endpoint takes (or a malformed task) |
| `unauthorized` | 401 | no, or no valid, credentials (with `WWW-Authenticate`) |
| `forbidden` | 403 | credentials that do not grant this (a wrong Drive channel token; an unproven folder) |
| `not_found` | 404 | no such route, or nothing of this organisation by that id |
| `method_not_allowed` | 405 | (with `Allow`) |
| `conflict` | 409 | a Drive folder the operator mapped to another organisation |
| `invalid_state` | 400 | a Drive consent `state` this deployment did not sign, or signed too long ago |
| `consent_refused` | 400 | the user declined the Drive consent |
| `consent_failed` | 400 | Google refused the code exchange |
| `not_configured` | 501 | Drive consent is not configured in this deployment |
| `payload_too_large` | 413 | |
| `unavailable` | 503 | the database is restarting or failing over (with `Retry-After`); retry |
| `internal` | 500 | a bug: logged with its traceback, never shown |

Other HTTP errors get the `CODES` name of their status, or `http_<status>`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from flask import Response, jsonify, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal",
    501: "not_implemented",
    503: "unavailable",
}
MESSAGES = {404: "not found", 405: "method not allowed", 500: "internal error"}


def error(status: int, code: str, message: str) -> Response:
    """A JSON error response; 401 says how to authenticate."""
    resp = jsonify({"error": message, "code": code})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="heimdex"'
    return resp


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = MESSAGES.get(status) or (exc.description or exc.name or "error").split("\n")[0]
    resp = error(status, CODES.get(status, f"http_{status}"), message)
    if isinstance(exc, MethodNotAllowed):
        resp.headers["Allow"] = ", ".join(exc.valid_methods or [])  # RFC 9110
    return resp


def _database_unavailable(_: Exception) -> Response:
    # The database is restarting or failing over; the pool reconnects with backoff. A client
    # should retry, not treat it as a server bug.
    resp = error(503, "unavailable", "the database is unavailable; retry shortly")
    resp.headers["Retry-After"] = "2"
    return resp


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"method": request.method, "path": request.path})
    return error(500, "internal", "internal error")


def install(errorhandler: Callable[[Any], Callable[[Any], Any]]) -> None:
    """Register the JSON handlers through an app's `errorhandler` decorator: a Flask app's, or
    `functions_framework.errorhandler` (the app the framework builds around a function)."""
    errorhandler(HTTPException)(_http_error)
    errorhandler(500)(_http_error)  # replaces functions-framework's plain-text crash handler
    errorhandler(psycopg.OperationalError)(_database_unavailable)
    errorhandler(PoolTimeout)(_database_unavailable)
    errorhandler(Exception)(_unexpected)
