"""Signed media URLs: what an `<img>` or `<video>` tag can load without an Authorization header.

A Heimdex media URL is `/v1/media/<org>/<asset>/<object>?exp=<unix s>&sig=<mac>`, where the MAC is
HMAC-SHA256, under a key only the server holds, of the organisation, the asset, the object (`video`
or `thumbnails/<n>.jpg`) and the expiry. Changing any of them, or waiting past the expiry, makes the
URL worthless. The key: HEIMDEX_MEDIA_URL_KEY, else one derived from the HS256 API secret (embedded),
else one kept in HEIMDEX_HOME (mode 0600), like the API secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from heimdex.config import Settings

VERSION = b"heimdex-media-v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def media_key(settings: Settings, api_secret: str | None) -> bytes:
    if settings.media_url_key is not None:
        return settings.media_url_key.get_secret_value().encode()
    if api_secret:
        return hmac.new(api_secret.encode(), b"heimdex media URLs", hashlib.sha256).digest()
    path: Path = settings.home / "media_url_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


class MediaSigner:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        self.key = key
        self.ttl_s = ttl_s

    def mac(self, org_id: str, asset_id: str, obj: str, exp: int) -> str:
        message = b"\n".join([VERSION, org_id.encode(), asset_id.encode(), obj.encode(), str(exp).encode()])
        return _b64(hmac.new(self.key, message, hashlib.sha256).digest())

    def path(self, org_id: str, asset_id: str, obj: str, now: float | None = None) -> str:
        """The signed path (no host) of an object of an asset."""
        exp = int((time.time() if now is None else now) + self.ttl_s)
        sig = self.mac(org_id, asset_id, obj, exp)
        return f"/v1/media/{quote(org_id)}/{asset_id}/{obj}?exp={exp}&sig={sig}"

    def verify(
        self, org_id: str, asset_id: str, obj: str, exp: int, sig: str, now: float | None = None
    ) -> bool:
        if exp < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self.mac(org_id, asset_id, obj, exp), sig)
