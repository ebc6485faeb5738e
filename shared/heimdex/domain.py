"""Core value types shared by stages, the index and the API."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

# Suffixes taken as video when walking folders or watching buckets and Drive without a MIME type.
VIDEO_EXTENSIONS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".wmv",
    ".flv",
    ".mpg",
    ".mpeg",
    ".mts",
    ".m2ts",
    ".ts",
    ".3gp",
    ".mxf",
    ".ogv",
    ".dv",
}
# Whole-string patterns: always `fullmatch` (`^...$` with `match` lets a trailing newline through).
ORG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
JOB_ID_RE = re.compile(r"job-[0-9a-f]{24}")


class MediaError(Exception):
    """The input itself is unusable (not video, corrupt, too large). Retrying cannot help."""


class StageSkipped(Exception):
    """A stage has nothing to do for this asset (e.g. its model is not configured)."""


def is_valid_org(org: object) -> bool:
    return isinstance(org, str) and ORG_RE.fullmatch(org) is not None


def validate_org(org: str) -> str:
    if not is_valid_org(org):
        raise ValueError(
            f"invalid organisation id {org!r}: use letters, digits, '_', '.', '-' (max 63),"
            " starting with a letter or digit"
        )
    return org


def make_asset_id(org: str, source: str, version: str) -> str:
    """asset_id = hash(org, source, version): stable for the same bytes, new for a new version."""
    digest = hashlib.sha256(f"{org}\x00{source}\x00{version}".encode()).hexdigest()
    return digest[:24]


# A re-index in the cloud runs as a new version label of the same source (api/app.py): `<version>`
# + REINDEX_MARK + a timestamp. The version of the bytes themselves is what comes before it.
REINDEX_MARK = "+reindex-"


def base_version(version: str) -> str:
    return version.split(REINDEX_MARK, 1)[0]


def make_job_id(asset_id: str) -> str:
    return f"job-{asset_id}"


@dataclass(frozen=True)
class AssetRef:
    """What a pipeline run works on: an organisation's version of one source object."""

    org_id: str
    asset_id: str
    source: str
    version: str

    @property
    def job_id(self) -> str:
        return make_job_id(self.asset_id)

    def derived_key(self, name: str) -> str:
        return f"derived/{self.org_id}/{self.asset_id}/{name}"

    @property
    def sidecar_key(self) -> str:
        return f"derived/{self.org_id}/sidecars/{self.asset_id}.json"


DRIVE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")  # fullmatch: a Drive file or folder id


def validate_folder_id(folder_id: object) -> str:
    """A Drive file id: 1-200 of letters, digits, '_' and '-' (what Drive issues)."""
    if not isinstance(folder_id, str) or not DRIVE_ID_RE.fullmatch(folder_id):
        raise ValueError(f"invalid Drive folder id {folder_id!r}")
    return folder_id


KEY_BYTES = 32  # HEIMDEX_DRIVE_TOKEN_KEY (adapters/drive_auth.py)


def decode_key(value: str) -> bytes:
    """A 32-byte key written in base64 (standard or URL-safe, padding optional)."""
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {KEY_BYTES} bytes written in base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} bytes written in base64 (got {len(key)} bytes)")
    return key
