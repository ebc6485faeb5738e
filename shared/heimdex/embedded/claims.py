"""Which local process indexes which source: two `heimdex index` runs on one HEIMDEX_HOME.

Each run claims a source (organisation + path) before it starts the source's job, with a PostgreSQL
session advisory lock on a connection of its own, and frees it when the job ends. A lock lives
exactly as long as its connection, so a run that is interrupted, killed or crashes frees its sources
at once, with no stale marker to clean up. A second run that finds a source claimed waits for it and
then indexes it only if it is still not up to date: no file is indexed twice, and no job is restarted
under a run that is still working on it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import psycopg

from heimdex.domain import AssetRef


def claim_key(ref: AssetRef) -> int:
    """A signed 64-bit advisory-lock key for (organisation, source)."""
    digest = hashlib.sha256(f"heimdex-claim\x00{ref.org_id}\x00{ref.source}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SourceClaims:
    def __init__(self, url: str) -> None:
        self.name = f"heimdex index (pid {os.getpid()})"
        self._conn = psycopg.connect(url, autocommit=True, application_name=self.name)
        self._lock = threading.RLock()  # one connection, used from the dispatcher's threads too
        self._held: set[int] = set()

    def _one(self, sql: str, *params: Any) -> Any:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def try_claim(self, ref: AssetRef) -> bool:
        key = claim_key(ref)
        with self._lock:
            if key not in self._held and self._one("SELECT pg_try_advisory_lock(%s)", key):
                self._held.add(key)
            return key in self._held

    def holder(self, ref: AssetRef) -> str | None:
        """Who holds the claim: the other process's connection name, e.g. `heimdex index (pid 42)`."""
        key = claim_key(ref)
        name: str | None = self._one(
            """SELECT coalesce(nullif(a.application_name, ''), 'backend ' || a.pid)
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.classid = %s::oid AND l.objid = %s::oid AND a.pid <> pg_backend_pid()""",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        return name

    def release(self, ref: AssetRef) -> None:
        key = claim_key(ref)
        with self._lock:
            if key in self._held and not self._conn.closed:
                self._held.discard(key)
                self._one("SELECT pg_advisory_unlock(%s)", key)

    def close(self) -> None:
        """Frees every claim (they end with the connection)."""
        with self._lock:
            self._held.clear()
            self._conn.close()
