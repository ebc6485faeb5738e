"""Row-level security that holds against SQL reaching the application's connection.

Every statement here runs on the application's own pooled connection (Database.pool, as Engine,
the API and the stages use it), as injected SQL would: switching role, forging the organisation
setting inside a search, reading with no organisation, and the other ways out (temporary tables
that shadow the real ones, the owner's key table, disabling RLS) are each refused or see nothing of
another organisation. Migrations and index maintenance still run as the owner. The last tests check,
without Cloud SQL, which endpoint the settings choose (the Cloud SQL Python Connector with IAM
database authentication in the cloud).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from heimdex.config import Settings
from heimdex.embedded.engine import Engine
from heimdex.vectorstore import connect as connect_mod
from heimdex.vectorstore import db as db_mod
from heimdex.vectorstore import orgindex
from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore.connect import APP_ROLE, CloudSql, Endpoint, endpoints, iam_user_name, with_user
from heimdex.vectorstore.db import Database

OWN, OTHER = "intruder", "default"  # the corpus is in "default"
DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture
def app_conn(engine: Engine, corpus: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the application's pool, in a transaction rolled back afterwards."""
    with engine.db.pool.connection() as conn:
        yield conn
        conn.rollback()


def count(conn: psycopg.Connection[Any], table: str, org: str | None = None) -> int:
    where = sql.SQL(" WHERE org_id = {}").format(org) if org else sql.SQL("")
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)) + where).fetchone()
    assert row is not None
    return int(row[0])


def refused(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> bool:
    try:
        conn.execute(statement, params)
    except DENIED:
        conn.rollback()
        return True
    conn.rollback()
    return False


def test_the_pool_logs_in_as_the_application_role(engine: Engine, app_conn: psycopg.Connection[Any]) -> None:
    row = app_conn.execute(
        "SELECT session_user, current_user, r.rolsuper, r.rolbypassrls, r.rolcreaterole,"
        " pg_has_role(session_user, c.relowner, 'MEMBER')"
        " FROM pg_roles r, pg_class c WHERE r.rolname = session_user AND c.oid = 'scenes'::regclass"
    ).fetchone()
    assert row == (APP_ROLE, APP_ROLE, False, False, False, False)
    owner = app_conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'scenes'::regclass")
    assert owner.fetchone() != (APP_ROLE,)


def test_reset_role_leaves_the_application_role(app_conn: psycopg.Connection[Any]) -> None:
    app_conn.execute("RESET ROLE")
    assert app_conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
    assert count(app_conn, "scenes") == 0 and count(app_conn, "assets") == 0


@pytest.mark.parametrize(
    "statement",
    ["SET ROLE postgres", "SET SESSION AUTHORIZATION postgres", "SET ROLE pg_read_all_data"],
)
def test_the_application_cannot_become_another_role(
    app_conn: psycopg.Connection[Any], statement: str
) -> None:
    assert refused(app_conn, statement)


def test_the_application_cannot_become_the_owner(app_conn: psycopg.Connection[Any]) -> None:
    row = app_conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'scenes'::regclass")
    owner = row.fetchone()
    assert owner is not None
    assert refused(app_conn, sql.SQL("SET ROLE {}").format(sql.Identifier(owner[0])).as_string(app_conn))
    assert refused(
        app_conn, sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner[0])).as_string(app_conn)
    )


def test_no_organisation_set_reads_nothing(engine: Engine, app_conn: psycopg.Connection[Any]) -> None:
    for table in ("scenes", "scene_units", "assets", "jobs"):
        assert count(app_conn, table) == 0
    assert app_conn.execute("SELECT heimdex_current_org()").fetchone() == (None,)
    qt = np.ones(384, dtype=np.float32)
    assert search_sql.search(app_conn, "lighthouse", text_vec=qt, text_model="x") == []
    with engine.db.org_tx(OTHER) as conn:  # the data is there
        assert count(conn, "scenes") > 0 and count(conn, "scene_units") > 0


def test_forging_the_organisation_inside_a_search_sees_nothing(
    engine: Engine, corpus: dict[str, Any]
) -> None:
    qt = engine.models.embed_texts(["lighthouse lamp storm"])[0].astype(np.float32)
    text_model = engine.models.text_name
    with engine.db.org_tx(OTHER) as conn:
        assert search_sql.search(conn, "lighthouse", text_vec=qt, text_model=text_model)  # genuine
    with engine.db.org_tx(OWN) as conn:
        assert conn.execute("SELECT heimdex_current_org()").fetchone() == (OWN,)
        conn.execute("SELECT set_config('heimdex.org_id', %s, true)", (OTHER,))
        assert conn.execute("SELECT heimdex_current_org()").fetchone() == (None,)
        for table in ("scenes", "scene_units", "assets", "jobs"):
            assert count(conn, table, OTHER) == 0 and count(conn, table) == 0
        assert search_sql.search(conn, "lighthouse", text_vec=qt, text_model=text_model) == []
        hits = conn.execute("SELECT count(*) FROM heimdex_keyword_hits('lighthouse', NULL, 100)").fetchone()
        assert hits == (0,)
    with engine.db.org_tx(OWN) as conn:
        # Both settings, session-wide, and in the same statement as the read: still nothing.
        own_mac = conn.execute("SELECT current_setting('heimdex.org_mac')").fetchone()
        conn.execute("SELECT set_config('heimdex.org_id', %s, false)", (OTHER,))
        conn.execute("SELECT set_config('heimdex.org_mac', %s, false)", own_mac)
        row = conn.execute(
            "SELECT set_config('heimdex.org_id', %s, true), (SELECT count(*) FROM scenes)", (OTHER,)
        ).fetchone()
        assert row == (OTHER, 0)
        conn.execute("SELECT set_config('heimdex.org_mac', %s, true)", ("0" * 64,))
        assert count(conn, "scenes", OTHER) == 0


def test_session_settings_do_not_outlive_the_request(home: Path, engine: Engine) -> None:
    """Session-level state one request leaves (settings, an advisory lock) is gone before the next
    request's statements run (db.ENTER_ORG: RESET ALL, advisory locks released); one session here."""
    db = Database(Settings(home=home, database_url=engine.db.url, db_pool_size=1))
    try:
        with db.pool.connection() as conn:
            conn.execute("SELECT set_config('heimdex.org_id', %s, false)", (OTHER,))
            conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
            conn.execute("SELECT pg_advisory_lock(42)")
            conn.commit()
            pid = conn.info.backend_pid
        with db.org_tx(OWN) as conn:
            assert conn.info.backend_pid == pid
            assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
            locks = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
            )
            assert locks.fetchone() == (0,)
            assert conn.execute("SELECT heimdex_current_org()").fetchone() == (OWN,)
        with db.pool.connection() as conn:
            assert conn.execute("SELECT current_setting('heimdex.org_id', true)").fetchone() in (
                (None,),
                ("",),
            )
    finally:
        db.close()


def test_writes_into_another_organisation_are_refused(engine: Engine, corpus: dict[str, Any]) -> None:
    with pytest.raises(DENIED), engine.db.org_tx(OWN) as conn:
        conn.execute("SELECT set_config('heimdex.org_id', %s, true)", (OTHER,))
        conn.execute(
            "INSERT INTO assets (org_id, asset_id, source, version, status)"
            " VALUES (%s, 'x', '/x', '1', 'ready')",
            (OTHER,),
        )
    with engine.db.org_tx(OWN) as conn:
        conn.execute("SELECT set_config('heimdex.org_id', %s, true)", (OTHER,))
        assert conn.execute("DELETE FROM scenes WHERE org_id = %s", (OTHER,)).rowcount == 0
        assert conn.execute("DELETE FROM scene_units WHERE org_id = %s", (OTHER,)).rowcount == 0
        assert conn.execute("UPDATE assets SET error = 'x' WHERE org_id = %s", (OTHER,)).rowcount == 0


@pytest.mark.parametrize(
    "statement",
    [
        # The session's key: registered once, before the pool hands the session out.
        "SELECT heimdex_open_session(decode(repeat('00', 64), 'hex'), decode(repeat('00', 64), 'hex'))",
        "SELECT * FROM heimdex_sessions",
        "DELETE FROM heimdex_sessions",
        # A temporary `scenes` would shadow the real table for the next request on this session.
        "CREATE TEMP TABLE scenes (org_id text)",
        "CREATE TABLE public.stash (x text)",
        "CREATE SCHEMA stash",
        "ALTER TABLE scenes DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE scenes NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY org_isolation ON scenes",
        "ALTER TABLE scene_units DISABLE ROW LEVEL SECURITY",
        "DROP POLICY org_isolation ON scene_units",
        "CREATE OR REPLACE FUNCTION heimdex_current_org() RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
        "GRANT postgres TO heimdex_app",
        "ALTER ROLE heimdex_app BYPASSRLS",
        "ALTER ROLE heimdex_app SUPERUSER",
    ],
)
def test_other_ways_out_are_refused(app_conn: psycopg.Connection[Any], statement: str) -> None:
    assert refused(app_conn, statement), f"the application role could run: {statement}"


def test_policies_evaluate_the_organisation_once_per_statement(engine: Engine) -> None:
    """`(SELECT heimdex_current_org())` is an init plan: one evaluation per statement, then an index
    condition like a constant (the per-organisation indexes: test_search_scale.py)."""
    with engine.db.org_tx(OTHER) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute("EXPLAIN (COSTS OFF, VERBOSE) SELECT * FROM scenes WHERE asset_id = 'x'")
        )
    assert "InitPlan" in plan and "heimdex_current_org()" in plan, plan
    assert "Index Cond: ((scenes.org_id = (InitPlan 1).col1)" in plan, plan


def test_migrations_and_maintenance_run_as_the_owner(engine: Engine) -> None:
    assert engine.db.owner is not None
    with psycopg.connect(engine.db.url, autocommit=True) as owner:
        row = owner.execute("SELECT current_user, max(version) FROM schema_migrations").fetchone()
        assert row == ("postgres", len(db_mod.migrations(engine.settings)))
        owners = owner.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relname IN ('scenes', 'scene_units', 'assets', 'jobs', 'heimdex_sessions')"
        ).fetchall()
        assert owners == [("postgres",)]
    with orgindex.connect(engine.db) as conn:  # index maintenance: the owner's connection
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_an_owner_or_superuser_application_url_is_refused(home: Path, engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="row-level security would not hold"):
        Database(Settings(home=home, database_url=engine.db.url, database_app_url=engine.db.url))


def test_an_application_only_process(
    home: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process given only the application URL (a cloud service) neither migrates nor builds
    indexes, and refuses to start on a schema older than its code."""
    db = Database(Settings(home=home, database_app_url=engine.db.app_url))
    try:
        assert db.owner is None
        with db.org_tx(OTHER) as conn:
            assert count(conn, "scenes") > 0
        with caplog.at_level("INFO", logger=orgindex.__name__):
            orgindex.after_ingest(db, OTHER)
        assert any("maintenance job" in r.message for r in caplog.records)
        with pytest.raises(RuntimeError, match="no owner"):
            _ = db.url
    finally:
        db.close()
    newer = [*db_mod.migrations(engine.settings), "SELECT 1"]
    monkeypatch.setattr(db_mod, "migrations", lambda s: newer)
    with pytest.raises(RuntimeError, match="run the migrations"):
        Database(Settings(home=home, database_app_url=engine.db.app_url))


# -- which endpoint the settings choose (no Cloud SQL here) -------------------------------------------


def test_endpoints_embedded_and_urls(tmp_path: Path) -> None:
    owner_url = "postgresql://postgres:@/postgres?host=/tmp/pg"
    owner, app = endpoints(Settings(home=tmp_path), owner_url)
    assert owner == Endpoint(owner_url)
    assert app is not None and app.user == APP_ROLE and "password" not in app.conninfo
    assert "host=/tmp/pg" in app.conninfo and "dbname=postgres" in app.conninfo
    explicit = "postgresql://svc:pw@db.internal/heimdex"
    owner, app = endpoints(Settings(home=tmp_path, database_app_url=explicit), owner_url)
    assert app == Endpoint(explicit)
    owner, app = endpoints(Settings(home=tmp_path, database_app_url=explicit), None)
    assert owner is None and app == Endpoint(explicit)
    derived = psycopg.conninfo.conninfo_to_dict(with_user("postgresql://o:secret@h:5/d?sslmode=require", "x"))
    assert derived == {"user": "x", "host": "h", "port": "5", "dbname": "d", "sslmode": "require"}


def test_endpoints_cloud_sql_with_iam_authentication(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"home": tmp_path, "cloudsql_instance": "p:us-central1:heimdex", "database_url": "ignored"}
    owner, app = endpoints(Settings(**base, cloudsql_user="heimdex-fn-search@p.iam"), None)
    assert owner is None and app is not None and app.conninfo == ""
    assert app.cloudsql == CloudSql("p:us-central1:heimdex", "heimdex", "heimdex-fn-search@p.iam", "PRIVATE")
    owner, app = endpoints(
        Settings(**base, cloudsql_user="heimdex-db-owner@p.iam", cloudsql_owner=True), None
    )
    assert app is None and owner is not None and owner.user == "heimdex-db-owner@p.iam"

    # The user defaults to the process's own service account (the one the connector signs in as).
    class Credentials:
        service_account_email = "default"

        def refresh(self, request: Any) -> None:
            self.service_account_email = "heimdex-stage-index@p.iam.gserviceaccount.com"

    monkeypatch.setattr("google.auth.default", lambda: (Credentials(), "p"))
    _, app = endpoints(Settings(**base), None)
    assert app is not None and app.user == "heimdex-stage-index@p.iam"
    assert iam_user_name("a@b.iam.gserviceaccount.com") == "a@b.iam"
    with pytest.raises(ValueError):
        iam_user_name("someone@example.com")

    # Connections go through the connector, as the IAM user, with IAM database authentication.
    calls: list[tuple[Any, ...]] = []

    class Connector:
        def connect(self, instance: str, driver: str, **kwargs: Any) -> Any:
            calls.append((instance, driver, kwargs))
            return SimpleNamespace(closed=False)

    monkeypatch.setattr(connect_mod, "_connector", Connector())
    app.connect(autocommit=True)
    pool_class = app.pool_args()["connection_class"]
    pool_class.connect("", prepare_threshold=None)
    assert calls == [
        (
            "p:us-central1:heimdex",
            "psycopg",
            {
                "user": "heimdex-stage-index@p.iam",
                "db": "heimdex",
                "enable_iam_auth": True,
                "ip_type": "PRIVATE",
                "autocommit": True,
            },
        ),
        (
            "p:us-central1:heimdex",
            "psycopg",
            {
                "user": "heimdex-stage-index@p.iam",
                "db": "heimdex",
                "enable_iam_auth": True,
                "ip_type": "PRIVATE",
                "prepare_threshold": None,
            },
        ),
    ]
    assert "password" not in str(calls)


def test_the_maintenance_entry_point_needs_the_owner(
    home: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m heimdex.vectorstore.orgindex` (the cloud's maintenance job): migrations, then indexes,
    as the owner; given only the application's connection it refuses."""
    monkeypatch.setattr("sys.argv", ["orgindex"])
    monkeypatch.setenv("HEIMDEX_HOME", str(home))
    monkeypatch.setenv("HEIMDEX_DATABASE_URL", engine.db.url)
    orgindex.main()
    assert f"schema version {len(db_mod.migrations(engine.settings))}" in capsys.readouterr().out
    monkeypatch.delenv("HEIMDEX_DATABASE_URL")
    monkeypatch.setenv("HEIMDEX_DATABASE_APP_URL", engine.db.app_url)
    with pytest.raises(SystemExit, match="no owner connection"):
        orgindex.main()
