"""Warming a freshly started server (heimdex.vectorstore.prewarm): every search relation is read, by
pg_prewarm where the server has it, else by reading its files (the embedded build)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from heimdex.vectorstore import prewarm
from heimdex.vectorstore.db import Database

from .conftest import settings_for


def test_warm_reads_every_search_relation(tmp_path: Path) -> None:
    db = Database(settings_for(tmp_path / "home"))
    try:
        with psycopg.connect(db.url, autocommit=True) as conn:
            names = {r[0] for r in conn.execute(prewarm.RELATIONS, {"tables": list(prewarm.TABLES)})}
            expected = "pg_prewarm" if prewarm.has_pg_prewarm(conn) else "file read"
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT indexrelid::regclass::text FROM pg_index"
                    " WHERE indrelid IN ('scenes'::regclass, 'assets'::regclass)"
                )
            }
        assert {"scenes", "assets", "scenes_pkey", "scenes_tsv", "assets_pkey"} <= names
        assert indexes <= names  # every index on the two tables, the organisations' own included
        done = db.warm_cache()
        assert done is not None
        assert done.method == expected and done.relations == len(names) and done.mb > 0
    finally:
        db.close()


def test_no_owner_no_warm_up(tmp_path: Path) -> None:
    """A process that connects only as the application role (the search function) warms nothing."""
    owner = Database(settings_for(tmp_path / "home"))
    try:
        app_only = Database(settings_for(tmp_path / "app", database_app_url=owner.app_url))
        try:
            assert app_only.warm_cache() is None
        finally:
            app_only.close()
    finally:
        owner.close()
