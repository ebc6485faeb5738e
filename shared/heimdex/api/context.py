"""What the API's route modules share: the services, the media URL signer, the re-index hook, and
the helpers every route uses (the caller's organisation, JSON errors, opaque cursors, media URLs)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, g, request
from pydantic import BaseModel

from heimdex.api import errors
from heimdex.api.signing import MediaSigner
from heimdex.domain import AssetRef

Responses = dict[str | int, type[BaseModel] | dict[Any, Any] | None]
BEARER: list[dict[str, list[Any]]] = [{"bearer": []}]  # the operations that take a token


def error_responses(*statuses: int) -> Responses:
    """The documented error answers of an operation: each the one JSON error shape."""
    from heimdex.api.models import Error

    return dict.fromkeys(statuses, Error)


class BadCursor(ValueError):
    pass


def encode_cursor(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, fingerprint: str) -> dict[str, Any]:
    """The cursor's fields, if it was made by this API for the same query (`fingerprint`)."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("cursor is not one this API issued") from None
    if not isinstance(doc, dict) or doc.get("f") != fingerprint:
        raise BadCursor("cursor belongs to another query; start again without it")
    return doc


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def org() -> str:
    """The caller's organisation: from the verified token, never from the request."""
    value: str = g.org_id
    return value


def invalid(message: str) -> Response:
    return errors.error(400, "invalid_parameter", message)


def not_found(what: str = "asset") -> Response:
    # One answer for a missing id and another organisation's: nothing tells them apart.
    return errors.error(404, "not_found", f"no such {what}")


def dump(model: BaseModel, status: int = 200) -> Response:
    resp = Response(model.model_dump_json(), status=status, mimetype="application/json")
    return resp


@dataclass
class ApiContext:
    engine: Any  # heimdex.services.Services; the embedded Engine adds index()
    signer: MediaSigner
    reindex: Callable[[AssetRef], AssetRef]  # the asset and job that the new run makes

    def base(self) -> str:
        """Where signed URLs point: HEIMDEX_PUBLIC_URL, else this request's host with the scheme the
        TLS-terminating proxy in front of the app names (a browser page on https cannot load http
        media). The header only shapes the URLs handed back to the same caller, so it needs no trust."""
        public = self.engine.settings.public_url
        if public:
            return str(public).rstrip("/")
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else request.scheme
        return f"{scheme}://{request.host}"

    def media_url(self, org_id: str, asset_id: str) -> str:
        return self.base() + self.signer.path(org_id, asset_id, "video")

    def thumbnail_url(self, org_id: str, asset_id: str, scene: int, stored: str | None) -> str | None:
        if not stored:
            return None
        return self.base() + self.signer.path(org_id, asset_id, f"thumbnails/{scene}.jpg")

    def face_url(self, org_id: str, asset_id: str | None, face_id: int | None) -> str | None:
        """A face track's crop (people covers and appearances): signed like a scene thumbnail."""
        if not asset_id or face_id is None:
            return None
        return self.base() + self.signer.path(org_id, asset_id, f"faces/{face_id}.jpg")

    @staticmethod
    def link(media_url: str, start: float) -> str:
        return f"{media_url}#t={start:.1f}"
