"""Search at scale in the product: halfvec vectors kept in the row (migration 003, applied in place to
a database made before it), exact search for small organisations, dedicated HNSW indexes for large
ones, and row-level security on every path. The figures are bench/bench_search.py's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from heimdex.config import Settings
from heimdex.vectorstore import db as db_mod
from heimdex.vectorstore import orgindex
from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore.db import Database, start_embedded

TEXT_MODEL, IMAGE_MODEL = "t-model", "i-model"
ORGS = {"alpha": 120, "beta": 60}  # scenes per organisation


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def old_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, dict[str, Any]]]:
    """A database made by migrations 001-002 (float vectors), filled, then opened by today's code."""
    home = tmp_path_factory.mktemp("heimdex-scale")
    settings = Settings(home=home, database_url=None)
    url = start_embedded(settings)
    all_migrations = db_mod.migrations
    db_mod.migrations = lambda s: all_migrations(s)[:2]  # type: ignore[assignment]
    try:
        Database(settings, url).close()
    finally:
        db_mod.migrations = all_migrations  # type: ignore[assignment]
    rng = np.random.default_rng(3)
    centres_t, centres_i = unit(rng.standard_normal((6, 384))), unit(rng.standard_normal((6, 512)))
    vectors: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        before = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'scenes'::regclass AND attname = 'text_vec'"
        ).fetchone()
        assert before == ("vector(384)",)
        for org, n in ORGS.items():
            for a in range(n // 20):
                asset = f"{org}-a{a}"
                conn.execute(
                    "INSERT INTO assets (org_id, asset_id, source, version, status, scenes)"
                    " VALUES (%s, %s, %s, '1', 'ready', 20)",
                    (org, asset, f"/{org}/{asset}.mp4"),
                )
                for i in range(20):
                    c = int(rng.integers(6))
                    tv = unit(centres_t[c] + 0.5 * unit(rng.standard_normal(384)))
                    iv = unit(centres_i[c] + 0.5 * unit(rng.standard_normal(512)))
                    vectors[(org, asset, i)] = (tv, iv)
                    conn.execute(
                        "INSERT INTO scenes (org_id, asset_id, idx, source, start_s, end_s, transcript,"
                        " text_vec, image_vec, text_model, image_model)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            org,
                            asset,
                            i,
                            f"/{org}/{asset}.mp4",
                            i * 5.0,
                            i * 5.0 + 5,
                            f"topic{c} words",
                            tv,
                            iv,
                            TEXT_MODEL,
                            IMAGE_MODEL,
                        ),
                    )
    db = Database(settings, url)  # applies 003 in place
    yield db, {"url": url, "vectors": vectors, "centres": (centres_t, centres_i)}
    db.close()


def test_migration_converts_vectors_in_place(old_db: tuple[Database, dict[str, Any]]) -> None:
    db, info = old_db
    with psycopg.connect(info["url"], autocommit=True) as conn:
        register_vector(conn)
        latest = len(db_mod.migrations(db.settings))  # 003 and everything after it, applied in place
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (latest,)
        cols = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attstorage FROM pg_attribute"
                " WHERE attrelid = 'scenes'::regclass AND attname IN ('text_vec', 'image_vec')"
            ).fetchall()
        )
        assert cols == {"text_vec": ("halfvec(384)", "m"), "image_vec": ("halfvec(512)", "m")}
        # Every vector is in the row: nothing in the TOAST table.
        toast = conn.execute(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'scenes'::regclass"
        ).fetchone()
        assert toast == (0,)
        assert conn.execute("SELECT count(*) FROM scenes").fetchone() == (sum(ORGS.values()),)
        # Values kept, rounded to half precision.
        for (org, asset, i), (tv, iv) in list(info["vectors"].items())[:20]:
            row = conn.execute(
                "SELECT text_vec <=> %s::halfvec, image_vec <=> %s::halfvec FROM scenes"
                " WHERE org_id = %s AND asset_id = %s AND idx = %s",
                (tv, iv, org, asset, i),
            ).fetchone()
            assert row is not None and row[0] < 1e-5 and row[1] < 1e-5
        hnsw = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'scenes' AND indexdef LIKE '%USING hnsw%'"
        ).fetchall()
        assert hnsw == []  # no shared graph: small organisations exactly, large ones by their own


def run(db: Database, org: str, q: tuple[np.ndarray, np.ndarray], **kw: Any) -> list[dict[str, Any]]:
    with db.org_tx(org) as conn:
        return search_sql.search(
            conn,
            "nomatch",  # vectors only: keyword ranks tie (ts_rank_cd), and ties order arbitrarily
            text_vec=q[0],
            text_model=TEXT_MODEL,
            image_vec=q[1],
            image_model=IMAGE_MODEL,
            k=10,
            **kw,
        )


def test_exact_and_graph_paths_agree_and_stay_in_their_organisation(
    old_db: tuple[Database, dict[str, Any]],
) -> None:
    db, info = old_db
    ct, ci = info["centres"]
    for org in ORGS:  # above the limit but without its graphs: searched exactly
        with db.org_tx(org) as conn:
            assert search_sql.plan(conn) == (org, "exact")
            assert search_sql.plan(conn, exact_max_rows=ORGS[org] - 1) == (org, "exact")
    with psycopg.connect(info["url"], autocommit=True) as owner:
        assert len(orgindex.ensure(owner, min_rows=0)) == 3 * len(ORGS)
    for org in ORGS:
        with db.org_tx(org) as conn:
            assert search_sql.plan(conn) == (org, "exact")
            assert search_sql.plan(conn, exact_max_rows=ORGS[org] - 1) == (org, "hnsw")
        for c in range(3):
            q = (ct[c], ci[c])
            exact = run(db, org, q)
            graph = run(db, org, q, exact_max_rows=0)  # the HNSW path, iterative scan
            assert len(exact) == 10 and len(graph) == 10
            assert {r["asset_id"] for r in exact + graph} <= {a for (o, a, _i) in info["vectors"] if o == org}
            assert [(r["asset_id"], r["idx"]) for r in exact] == [(r["asset_id"], r["idx"]) for r in graph]
            # The explicit choice (what bench/bench_search.py measures with) gives the same paths.
            assert run(db, org, q, path="exact") == exact
            assert run(db, org, q, path="hnsw") == graph
    with psycopg.connect(info["url"], autocommit=True) as owner:
        # An invalid index (a CONCURRENTLY build under way, or failed) is no graph to search.
        image = sql.Identifier(orgindex.index_name("alpha", "image"))
        owner.execute(sql.SQL("DROP INDEX {}").format(image))
        with pytest.raises(psycopg.errors.UniqueViolation):
            owner.execute(
                sql.SQL(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON scenes (org_id) WHERE org_id = 'alpha'"
                ).format(image)
            )
        with db.org_tx("alpha") as conn:
            assert search_sql.plan(conn, exact_max_rows=0) == ("alpha", "exact")
        assert len(orgindex.ensure(owner, min_rows=10**6)) == 3 * len(
            ORGS
        )  # all dropped again (and the invalid one)
        assert orgindex.existing(owner) == {}
    # Without an organisation set, nothing (row-level security would show nothing either).
    with db.pool.connection() as conn, conn.transaction():
        conn.execute(f"SET LOCAL ROLE {db_mod.APP_ROLE}")
        assert search_sql.search(conn, "x", text_vec=ct[0], text_model=TEXT_MODEL) == []


def test_new_rows_from_the_application_are_halfvec(old_db: tuple[Database, dict[str, Any]]) -> None:
    """store.replace_scenes sends float32 arrays (pgvector's `vector`): they are stored as halfvec."""
    db, info = old_db
    with db.org_tx("beta") as conn:
        conn.execute(
            "INSERT INTO scenes (org_id, asset_id, idx, source, start_s, end_s, text_vec, text_model)"
            " VALUES ('beta', 'beta-a0', 99, '/beta/beta-a0.mp4', 0, 1, %s, %s)",
            (info["centres"][0][5], TEXT_MODEL),
        )
        row = conn.execute(
            "SELECT pg_typeof(text_vec)::text FROM scenes WHERE asset_id = 'beta-a0' AND idx = 99"
        ).fetchone()
        assert row == ("halfvec",)
        conn.execute("DELETE FROM scenes WHERE asset_id = 'beta-a0' AND idx = 99")


def index_scans(url: str, name: str, more_than: int | None = None, *, table: bool = False) -> int:
    """pg_stat_user_indexes.idx_scan of an index (with table=True, of all a table's indexes); with
    more_than, waits (up to 60 s) for the statistics of another session (flushed when it goes idle)
    to pass that figure."""
    view, column = ("pg_stat_user_tables", "relname") if table else ("pg_stat_user_indexes", "indexrelname")
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(f"SELECT idx_scan FROM {view} WHERE {column} = %s", (name,)).fetchone()
            assert row is not None, name
            if more_than is None or row[0] > more_than:
                return int(row[0])
            assert time.monotonic() < deadline, f"{name}: idx_scan stayed at {row[0]}"
            time.sleep(0.1)
            conn.execute("SELECT pg_stat_clear_snapshot()")


def test_dedicated_index_is_used_for_its_organisation_only(old_db: tuple[Database, dict[str, Any]]) -> None:
    db, info = old_db
    with psycopg.connect(info["url"], autocommit=True) as conn:
        done = orgindex.ensure(conn, min_rows=100)
        assert [d.split()[0] for d in done] == ["created"] * 3  # alpha: text, image and keyword
        assert set(orgindex.existing(conn)) == {orgindex.index_name("alpha", s) for s in orgindex.SIGNALS}
        assert orgindex.ensure(conn, min_rows=100) == []  # idempotent
    ct, ci = info["centres"]
    params = {
        "or_q": "'topic1'",
        "qt": ct[1],
        "qi": ci[1],
        "text_model": TEXT_MODEL,
        "image_model": IMAGE_MODEL,
        "pool": 40,
        "k": 10,
        "source": None,
        "rrf_k": 60,
        **search_sql.NO_FILTERS,
    }
    for org, own in (("alpha", True), ("beta", False)):
        with db.org_tx(org) as conn:
            conn.execute("SET LOCAL enable_seqscan = off")  # tiny table: make the planner use an index
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + search_sql.SQL, {**params, "org": org}))
        assert (orgindex.index_name("alpha", "text") in plan) is own
        assert (orgindex.index_name("alpha", "image") in plan) is own
    exact = run(db, "alpha", (ct[1], ci[1]))
    graph = run(db, "alpha", (ct[1], ci[1]), exact_max_rows=0)
    assert [(r["asset_id"], r["idx"]) for r in exact] == [(r["asset_id"], r["idx"]) for r in graph]
    # Keyword candidates (heimdex_keyword_hits, 004) come through alpha's own GIN index, only alpha's.
    keyword = orgindex.index_name("alpha", "keyword")
    with psycopg.connect(info["url"], autocommit=True) as conn:
        conn.execute("ANALYZE scenes")  # the statistics autovacuum keeps: what the planner's choice needs
    for org, own in (("alpha", True), ("beta", False)):
        before = index_scans(info["url"], keyword)
        marker = index_scans(info["url"], "assets", table=True)
        with db.org_tx(org) as conn:
            conn.execute("SET LOCAL enable_seqscan = off")
            hits = conn.execute("SELECT asset_id FROM heimdex_keyword_hits('topic1', NULL, 100)").fetchall()
            # A marker in the same transaction: its statistics are flushed with the search's, so once
            # the marker's scan shows, the keyword index's count is final (no waiting on an absence).
            conn.execute("SELECT 1 FROM assets WHERE org_id = %s AND asset_id = ''", (org,))
            conn.execute("SELECT pg_stat_force_next_flush()")
        assert hits and {a for (a,) in hits} <= {a for (o, a, _i) in info["vectors"] if o == org}
        index_scans(info["url"], "assets", more_than=marker, table=True)
        assert (index_scans(info["url"], keyword) > before) is own
    with psycopg.connect(info["url"], autocommit=True) as conn:
        assert len(orgindex.ensure(conn, min_rows=10_000)) == 3  # alpha shrank below half: dropped
        assert orgindex.existing(conn) == {}


def test_graph_path_ranks_and_spans_the_sentences_of_its_candidates(
    old_db: tuple[Database, dict[str, Any]],
) -> None:
    """A large organisation (the graph path) gets the sentence/caption signal too: the units of the
    scenes its other signals found are ranked, and a hit spans its scene and its best unit, as on the
    exact path."""
    db, info = old_db
    ct, _ci = info["centres"]
    rng = np.random.default_rng(11)
    q = (ct[2], info["centres"][1][2])
    with psycopg.connect(info["url"], autocommit=True) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO assets (org_id, asset_id, source, version, status, scenes)"
            " VALUES ('gamma', 'gamma-a0', '/gamma/gamma-a0.mp4', '1', 'ready', 12)"
        )
        for i in range(12):
            # Scene 5 is nearest the query; every scene's sentence starts 2 s before its cut.
            tv = ct[2] if i == 5 else unit(ct[2] + 0.9 * unit(rng.standard_normal(384)))
            conn.execute(
                "INSERT INTO scenes (org_id, asset_id, idx, source, start_s, end_s, transcript, text_vec,"
                " text_model) VALUES ('gamma', 'gamma-a0', %s, '/gamma/gamma-a0.mp4', %s, %s, 'words',"
                " %s, %s)",
                (i, 10.0 * i, 10.0 * i + 10, tv, TEXT_MODEL),
            )
            uv = ct[2] if i == 5 else unit(rng.standard_normal(384))
            conn.execute(
                "INSERT INTO scene_units (org_id, asset_id, idx, unit, source, kind, start_s, end_s, text,"
                " text_vec, text_model) VALUES ('gamma', 'gamma-a0', %s, 0, '/gamma/gamma-a0.mp4', 'speech',"
                " %s, %s, 'a sentence', %s, %s)",
                (i, 10.0 * i - 2, 10.0 * i + 4, uv, TEXT_MODEL),
            )
    try:
        graph = run(db, "gamma", q, path="hnsw")
        exact = run(db, "gamma", q, path="exact")
        assert (graph[0]["idx"], graph[0]["start_s"], graph[0]["end_s"]) == (5, 48.0, 60.0)
        assert [(r["idx"], r["start_s"], r["end_s"], r["score"]) for r in graph] == [
            (r["idx"], r["start_s"], r["end_s"], r["score"]) for r in exact
        ]
        # Every hit played from its sentence's first word, 2 s before its scene's cut (none at 0: its
        # sentence starts at -2, and no span is cut to the file's start here).
        assert all(r["start_s"] == 10.0 * r["idx"] - 2 for r in graph)
        # Without units the same search spans scenes only: the fixture, not the code, made the spans.
        with psycopg.connect(info["url"], autocommit=True) as conn:
            conn.execute("DELETE FROM scene_units WHERE org_id = 'gamma'")
        assert all(r["start_s"] == 10.0 * r["idx"] for r in run(db, "gamma", q, path="hnsw"))
    finally:
        with psycopg.connect(info["url"], autocommit=True) as conn:
            conn.execute("DELETE FROM assets WHERE org_id = 'gamma'")
            conn.execute("DELETE FROM scenes WHERE org_id = 'gamma'")


def test_settings_reach_the_engine_search() -> None:
    s = Settings(home=Path("/nonexistent"))
    assert s.search_ef_search == search_sql.EF_SEARCH
    assert s.search_exact_max_rows == search_sql.EXACT_MAX_ROWS
