"""Dedicated HNSW indexes for large organisations: partial indexes over one organisation's rows.

One HNSW graph over every organisation, filtered down to the caller's by row-level security, keeps
only the caller's share of the tuples it visits: at 1M scenes it gave recall@10 0.66 for an
organisation holding 35% of the rows and 0.84 for one holding 1% (BENCHMARKS.md, "Search at
scale"). A partial index `... WHERE org_id = 'x'` is a graph of that organisation's rows alone, and
its searches need no filter. search.py names the organisation in its vector conditions, so the
planner proves the predicate and uses the organisation's own index; an organisation without one is
searched exactly (the planner has no graph to use), which is correct, only slower for a large one.
Small organisations are always searched exactly (Settings.search_exact_max_rows), so only the few
above it need an index (pgvector's README: partial indexes for a few values, partitioning for
many). `ensure()` gives one to every organisation above that size and drops those of organisations
that fell below half of it. Run it as the schema owner after large ingests, e.g.

    python -m heimdex.index.orgindex

ef_construction 200 (not pgvector's 64): a video's scenes sit close together, so the vectors form
many tight clusters, and with 64 the graph linked them poorly: at 80,000 rows the true top 40 were
found at 0.94 whatever ef_search was; with 200, 0.99 at ef_search 200 (2.5x the build time).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from typing import Any

import psycopg
from psycopg import sql

from heimdex.domain import validate_org

log = logging.getLogger(__name__)

PREFIX = "scenes_org_"
SIGNALS = {"text": ("text_vec", "halfvec_cosine_ops"), "image": ("image_vec", "halfvec_cosine_ops")}
M, EF_CONSTRUCTION = 16, 200


def index_name(org: str, signal: str) -> str:
    """A stable name within PostgreSQL's 63 bytes whatever the organisation id."""
    return f"{PREFIX}{hashlib.sha1(org.encode()).hexdigest()[:16]}_{signal}"


def ddl(org: str, signal: str, *, concurrently: bool = True) -> sql.Composed:
    validate_org(org)
    col, ops = SIGNALS[signal]
    return sql.SQL(
        "CREATE INDEX {conc} IF NOT EXISTS {name} ON scenes USING hnsw ({col} {ops})"
        " WITH (m = {m}, ef_construction = {efc}) WHERE org_id = {org}"
    ).format(
        conc=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(index_name(org, signal)),
        col=sql.Identifier(col),
        ops=sql.SQL(ops),
        m=sql.Literal(M),
        efc=sql.Literal(EF_CONSTRUCTION),
        org=sql.Literal(org),
    )


def existing(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Dedicated index name -> size in bytes (valid indexes only)."""
    rows = conn.execute(
        "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'scenes'::regclass AND i.indisvalid AND c.relname LIKE %s",
        (PREFIX + "%",),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def ensure(conn: psycopg.Connection[Any], min_rows: int, *, concurrently: bool = True) -> list[str]:
    """Give every organisation with more than min_rows scenes its indexes (largest first), drop those
    of organisations below min_rows / 2; return what was done. `conn` is an owner connection in
    autocommit mode (CONCURRENTLY needs it); min_rows is Settings.search_exact_max_rows."""
    sizes = dict(conn.execute("SELECT org_id, count(*) FROM scenes GROUP BY org_id").fetchall())
    have = existing(conn)
    # A failed CONCURRENTLY build leaves an invalid index behind: drop it, then build again.
    invalid = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'scenes'::regclass AND NOT i.indisvalid AND c.relname LIKE %s",
        (PREFIX + "%",),
    ).fetchall()
    done = []
    for (name,) in invalid:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        done.append(f"dropped invalid {name}")
    keep = set()
    for org, n in sorted(sizes.items(), key=lambda kv: -kv[1]):
        names = {index_name(org, s) for s in SIGNALS}
        if n > min_rows or (n >= min_rows // 2 and names & set(have)):
            keep |= names
            for signal in SIGNALS:
                if index_name(org, signal) not in have:
                    conn.execute(ddl(org, signal, concurrently=concurrently))
                    done.append(f"created {index_name(org, signal)} ({org}, {signal}, {n} rows)")
                    log.info(done[-1])
    for name in set(have) - keep:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        done.append(f"dropped {name}")
    return done


def main() -> None:
    from heimdex.config import Settings
    from heimdex.index.db import Database

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-rows", type=int, default=None, help="default: search_exact_max_rows")
    args = parser.parse_args()
    settings = Settings()
    db = Database(settings)
    try:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(f"SET maintenance_work_mem = '{settings.db_index_build_mem}'")
            for line in ensure(conn, args.min_rows or settings.search_exact_max_rows):
                print(line)
    finally:
        db.close()


if __name__ == "__main__":
    main()
