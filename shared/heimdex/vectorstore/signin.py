"""One-time sign-in links (migration 011): made by one process, redeemed once by another.

A link token is `<org>.<secret>`; the table keeps the SHA-256 of the whole token, its expiry and
when it was used. Both functions run inside the organisation's transaction (db.org_tx), so row-level
security confines them to it.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import Enum
from typing import Any

import psycopg

from heimdex.domain import is_valid_org


class Redeemed(Enum):
    OK = "ok"
    USED = "used"  # used before, or never issued
    EXPIRED = "expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def org_of(token: str) -> str | None:
    """The organisation a link token names, if it is shaped like one."""
    org, _, secret = token.rpartition(".")
    return org if is_valid_org(org) and len(secret) >= 32 else None


def create(conn: psycopg.Connection[Any], org_id: str, ttl_s: int) -> str:
    """A new link token for `org_id`, valid for `ttl_s` seconds; links long expired are dropped."""
    token = f"{org_id}.{secrets.token_urlsafe(32)}"
    conn.execute("DELETE FROM signin_links WHERE expires_at < now() - interval '1 day'")
    conn.execute(
        "INSERT INTO signin_links (org_id, token_hash, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))",
        (org_id, token_hash(token), ttl_s),
    )
    return token


def redeem(conn: psycopg.Connection[Any], token: str) -> Redeemed:
    """Use the link once: OK the first time before its expiry, never again."""
    row = conn.execute(
        "UPDATE signin_links SET used_at = now() WHERE token_hash = %s AND used_at IS NULL"
        " RETURNING expires_at > now()",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        return Redeemed.USED
    return Redeemed.OK if row[0] else Redeemed.EXPIRED
