"""Dedicated indexes for large organisations: partial HNSW and GIN indexes over one organisation's rows.

One HNSW graph over every organisation, filtered down to the caller's by row-level security, keeps
only the caller's share of the tuples it visits: at 1M scenes it gave recall@10 0.66 for an
organisation holding 35% of the rows and 0.84 for one holding 1% (BENCHMARKS.md, "Search at
scale"). A partial index `... WHERE org_id = 'x'` is a graph of that organisation's rows alone, and
its searches need no filter. search.py names the organisation in its vector conditions, so the
planner proves the predicate and uses the organisation's own index; search.plan() searches an
organisation whose vector indexes are missing or not yet valid exactly: correct, only slower.
Small organisations are always searched exactly (Settings.search_exact_max_rows), so only the few
above it need an index (pgvector's README: partial indexes for a few values, partitioning for
many). The index stage calls `after_ingest()` once an asset's scenes are in, which builds an
organisation's indexes when it first grows past that size (`ensure_org()`). `ensure()` is the bulk
and maintenance pass: it gives indexes to every organisation above the size and drops those of
organisations that fell below half of it; run it as the schema owner after a bulk load or an
upgrade, or to reclaim the indexes of organisations that shrank:

    python -m heimdex.vectorstore.orgindex

(it applies any pending migration first). Only a process with the owner's connection builds:
embedded, the index stage does it inline; in the cloud the services connect as application users
(heimdex.vectorstore.connect), so the maintenance job (this module as the owner's IAM user, after each
deploy and on a schedule) does it.

ef_construction 200 (not pgvector's 64): a video's scenes sit close together, so the vectors form
many tight clusters, and with 64 the graph linked them poorly: at 80,000 rows the true top 40 were
found at 0.94 whatever ef_search was; with 200, 0.99 at ef_search 200 (2.5x the build time).

The keyword signal gets the same treatment (migration 004): through the shared GIN index, a keyword
search of an organisation holding 35% of 1M rows had to AND the matches with a bitmap of the
organisation's 350,000 rows (p95 63 ms); through its own partial GIN index, p95 12 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from heimdex.config import Settings
from heimdex.domain import validate_org
from heimdex.vectorstore.connect import Endpoint, endpoints
from heimdex.vectorstore.db import Database, migrate, start_embedded
from heimdex.vectorstore.store import Conn

log = logging.getLogger(__name__)

PREFIX = "scenes_org_"
# signal -> (access method, column, operator class); HNSW takes M and EF_CONSTRUCTION.
SIGNALS = {
    "text": ("hnsw", "text_vec", "halfvec_cosine_ops"),
    "image": ("hnsw", "image_vec", "halfvec_cosine_ops"),
    "keyword": ("gin", "tsv", "tsvector_ops"),
}
M, EF_CONSTRUCTION = 16, 200


def index_name(org: str, signal: str) -> str:
    """A stable name within PostgreSQL's 63 bytes whatever the organisation id."""
    return f"{PREFIX}{hashlib.sha1(org.encode()).hexdigest()[:16]}_{signal}"


def lock_key(org: str) -> int:
    """The session advisory lock under which the organisation's indexes are built or replaced."""
    return int.from_bytes(hashlib.sha1(index_name(org, "").encode()).digest()[:8], "big", signed=True)


def _concurrently(concurrently: bool) -> sql.SQL:
    return sql.SQL("CONCURRENTLY" if concurrently else "")


def ddl(org: str, signal: str, *, concurrently: bool = True) -> sql.Composed:
    validate_org(org)
    method, col, ops = SIGNALS[signal]
    params = sql.SQL(" WITH (m = {}, ef_construction = {})").format(M, EF_CONSTRUCTION)
    return sql.SQL(
        "CREATE INDEX {conc} IF NOT EXISTS {name} ON scenes USING {method} ({col} {ops}){params}"
        " WHERE org_id = {org}"
    ).format(
        conc=_concurrently(concurrently),
        name=sql.Identifier(index_name(org, signal)),
        method=sql.SQL(method),
        col=sql.Identifier(col),
        ops=sql.SQL(ops),
        params=params if method == "hnsw" else sql.SQL(""),
        org=sql.Literal(org),
    )


def _catalog(conn: Conn, like: str = PREFIX + "%") -> list[tuple[str, bool, int]]:
    """(name, valid, size in bytes) of the dedicated indexes whose names are LIKE `like`. An invalid
    one is what a failed CONCURRENTLY build leaves behind (or one still being built)."""
    return conn.execute(
        "SELECT c.relname, i.indisvalid, pg_relation_size(c.oid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'scenes'::regclass AND c.relname LIKE %s",
        (like,),
    ).fetchall()


def existing(conn: Conn) -> dict[str, int]:
    """Dedicated index name -> size in bytes (valid indexes only)."""
    return {name: size for name, valid, size in _catalog(conn) if valid}


def _drop(conn: Conn, name: str, *, concurrently: bool) -> None:
    conn.execute(
        sql.SQL("DROP INDEX {} IF EXISTS {}").format(_concurrently(concurrently), sql.Identifier(name))
    )


def _build(conn: Conn, org: str, *, concurrently: bool) -> list[str]:
    """Build the organisation's missing indexes, first dropping an invalid leftover of a failed
    CONCURRENTLY build; return what was done. Under a session advisory lock on the organisation, so
    two sessions never build (or drop) the same index: if another holds it, it is building them and
    this one does nothing."""
    key = lock_key(org)
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not (row and row[0]):
        log.info("organisation indexes are being built by another session", extra={"org": org})
        return []
    try:
        # Read under the lock: an index invalid before it was taken may have been finished since.
        valid = {name: ok for name, ok, _size in _catalog(conn, index_name(org, "%"))}
        done = []
        for signal in SIGNALS:
            name = index_name(org, signal)
            if valid.get(name):
                continue
            if name in valid:
                _drop(conn, name, concurrently=concurrently)
                done.append(f"dropped invalid {name}")
            conn.execute(ddl(org, signal, concurrently=concurrently))
            done.append(f"created {name} ({org}, {signal})")
            log.info("organisation index created", extra={"org": org, "signal": signal, "index": name})
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def ensure_org(conn: Conn, org: str, min_rows: int, *, concurrently: bool = True) -> list[str]:
    """Give one organisation its indexes once it has more than min_rows scenes (a count that stops at
    min_rows + 1); return what was done, [] when it is small, already has them, or another session is
    building them. Never drops an organisation's indexes: shrinking is ensure()'s business. `conn` is
    as for ensure()."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM scenes WHERE org_id = %s LIMIT %s) s", (org, min_rows + 1)
    ).fetchone()
    if row is None or row[0] <= min_rows:
        return []
    return _build(conn, org, concurrently=concurrently)


def ensure(conn: Conn, min_rows: int, *, concurrently: bool = True) -> list[str]:
    """Give every organisation with more than min_rows scenes its indexes (largest first), drop those
    of organisations below min_rows / 2; return what was done. `conn` is an owner connection in
    autocommit mode (CONCURRENTLY needs it); min_rows is Settings.search_exact_max_rows."""
    sizes = dict(conn.execute("SELECT org_id, count(*) FROM scenes GROUP BY org_id").fetchall())
    indexes = _catalog(conn)
    have = {name for name, valid, _size in indexes if valid}
    done = []
    keep = set()
    for org, n in sorted(sizes.items(), key=lambda kv: -kv[1]):
        names = {index_name(org, s) for s in SIGNALS}
        if n > min_rows or (n >= min_rows // 2 and names & have):
            keep |= names
            done += _build(conn, org, concurrently=concurrently)
    for name, _valid, _size in indexes:
        if name not in keep:
            _drop(conn, name, concurrently=concurrently)
            done.append(f"dropped {name}")
    return done


@contextmanager
def connect_owner(owner: Endpoint, settings: Settings) -> Iterator[Conn]:
    """An owner connection in autocommit mode (CREATE INDEX CONCURRENTLY cannot run in a transaction)
    with Settings.db_index_build_mem for the graph."""
    with owner.connect(autocommit=True) as conn:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (settings.db_index_build_mem,))
        yield conn


@contextmanager
def connect(db: Database) -> Iterator[Conn]:
    """connect_owner() for a Database that has the owner's endpoint."""
    if db.owner is None:
        raise RuntimeError("this process has no owner connection: index maintenance is not its job")
    with connect_owner(db.owner, db.settings) as conn:
        yield conn


def after_ingest(db: Database, org: str) -> None:
    """ensure_org() for the organisation whose scenes the index stage has just committed; a failure is
    logged, never raised.

    A partial index covers its organisation's later rows by itself, so this builds only once, when an
    ingest first takes the organisation past Settings.search_exact_max_rows: inline, about 20 s at
    10,000 rows on 2 vCPUs (the rate of the 1M build in BENCHMARKS.md). Every later ingest only counts
    up to the limit and finds the indexes there. A failed build costs only speed: the organisation is
    searched exactly (and correctly) until the next ingest builds them. An organisation already far
    past the limit (a database upgraded by migration 003) is better served by
    `python -m heimdex.vectorstore.orgindex` than by an index stage."""
    if db.owner is None:
        # A service of the cloud path connects as an application user only: the maintenance job
        # (python -m heimdex.vectorstore.orgindex, scheduled) builds the indexes.
        log.info("no owner connection: organisation indexes are left to the maintenance job")
        return
    try:
        with connect(db) as conn:
            ensure_org(conn, org, db.settings.search_exact_max_rows)
    except Exception as exc:
        log.warning(
            "organisation index build failed; its searches stay exact",
            exc_info=True,
            extra={"org": org, "error": f"{type(exc).__name__}: {exc}"},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-rows", type=int, default=None, help="default: search_exact_max_rows")
    args = parser.parse_args()
    settings = Settings()
    url = settings.database_url
    if url is None and not (settings.cloudsql_instance or settings.database_app_url):
        url = start_embedded(settings)
    owner, _app = endpoints(settings, url)
    if owner is None:
        raise SystemExit(
            "no owner connection: set HEIMDEX_DATABASE_URL, or HEIMDEX_CLOUDSQL_OWNER for the owner's"
            " IAM user"
        )
    print(f"schema version {migrate(owner, settings)}")  # the owner's pass: migrations first
    with connect_owner(owner, settings) as conn:
        min_rows = settings.search_exact_max_rows if args.min_rows is None else args.min_rows
        for line in ensure(conn, min_rows):
            print(line)


if __name__ == "__main__":
    main()
