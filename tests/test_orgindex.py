"""An organisation's own HNSW and keyword indexes, built by the index stage when an ingest takes it
past the exact-search size (Settings.search_exact_max_rows, small here), against the real PostgreSQL: once,
never for a small organisation, not by two sessions at once, over an invalid leftover, and never at
the cost of the stage or its scenes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from heimdex.dev.samples import Segment
from heimdex.embedded.engine import Engine
from heimdex.stages import index as index_stage
from heimdex.vectorstore import orgindex
from tests.conftest import SPEECH_CLIP, make_clips

BIG, SMALL = "orgidx-big", "orgidx-small"
LIMIT = 3  # the speech clip makes more scenes than this, the short clip fewer
QUERY = "lighthouse keeper repaired the lamp"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    short = [Segment(4.0, speech="A short note about the harbour.")]
    return make_clips(tmp_path_factory.mktemp("orgidx"), {"speech": SPEECH_CLIP, "short": short})


@pytest.fixture
def owner(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection[Any]]:
    """The engine with a small exact-search limit, and an owner connection to look at its indexes."""
    monkeypatch.setattr(engine.settings, "search_exact_max_rows", LIMIT)
    with psycopg.connect(engine.db.url, autocommit=True) as conn:
        yield conn


def names(org: str) -> set[str]:
    return {orgindex.index_name(org, s) for s in orgindex.SIGNALS}


def oids(conn: psycopg.Connection[Any], org: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT c.relname, c.oid::int FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
        " WHERE i.indisvalid AND c.relname = ANY(%s)",
        (sorted(names(org)),),
    ).fetchall()
    return dict(rows)


def drop(conn: psycopg.Connection[Any], org: str) -> None:
    for name in names(org):
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def index_again(engine: Engine, path: Path, org: str) -> dict[str, Any]:
    """The index stage of an ingested asset run again, as a later ingest of the organisation runs it."""
    return index_stage.run(engine.context(engine.asset_ref(path, org)))


def test_index_stage_builds_a_large_organisations_indexes_once(
    engine: Engine,
    owner: psycopg.Connection[Any],
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first ingest past the limit fails to build (bad DDL): the stage and its scenes are unharmed.
    with monkeypatch.context() as m:
        m.setattr(orgindex, "ddl", lambda *a, **k: sql.SQL("CREATE INDEX broken ON"))
        with caplog.at_level(logging.WARNING, logger=orgindex.__name__):
            results = engine.index([clips["speech"]], org=BIG, force=True)
    assert [r.status for r in results] == ["ready"], results
    failed = [r for r in caplog.records if r.name == orgindex.__name__ and "build failed" in r.message]
    assert failed and getattr(failed[0], "org", None) == BIG
    assert not set(orgindex.existing(owner)) & names(BIG)
    scenes = engine.assets(org=BIG)[0]["scenes"]
    assert scenes > LIMIT
    assert engine.search(QUERY, org=BIG)[0]["source"] == str(clips["speech"])  # exactly, without the graph

    # An organisation below the limit gets none.
    assert [r.status for r in engine.index([clips["short"]], org=SMALL, force=True)] == ["ready"]
    assert 0 < engine.assets(org=SMALL)[0]["scenes"] <= LIMIT
    assert not set(orgindex.existing(owner)) & names(SMALL)

    # The next ingest builds them; the one after that finds them there and builds nothing.
    assert index_again(engine, clips["speech"], BIG)["scenes"] == scenes
    built = oids(owner, BIG)
    assert set(built) == names(BIG)
    index_again(engine, clips["speech"], BIG)
    assert oids(owner, BIG) == built
    assert orgindex.ensure_org(owner, BIG, LIMIT) == []
    assert engine.search(QUERY, org=BIG)[0]["source"] == str(clips["speech"])  # the graph path now


def test_a_build_in_progress_elsewhere_is_left_alone(
    engine: Engine, owner: psycopg.Connection[Any], clips: dict[str, Path]
) -> None:
    engine.index([clips["speech"]], org=BIG)  # ingested by the test above; alone, here
    drop(owner, BIG)
    with psycopg.connect(engine.db.url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (orgindex.lock_key(BIG),))
        index_again(engine, clips["speech"], BIG)
        assert oids(owner, BIG) == {}  # the lock's holder is building them
    index_again(engine, clips["speech"], BIG)
    assert set(oids(owner, BIG)) == names(BIG)


def test_an_invalid_leftover_is_replaced(
    engine: Engine, owner: psycopg.Connection[Any], clips: dict[str, Path]
) -> None:
    engine.index([clips["speech"]], org=BIG)
    drop(owner, BIG)
    # A CONCURRENTLY build that fails (here: duplicate keys) leaves its index behind, invalid.
    name = orgindex.index_name(BIG, "text")
    with pytest.raises(psycopg.errors.UniqueViolation):
        owner.execute(
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON scenes (org_id) WHERE org_id = {}").format(
                sql.Identifier(name), sql.Literal(BIG)
            )
        )
    assert orgindex.existing(owner).keys().isdisjoint(names(BIG))
    index_again(engine, clips["speech"], BIG)
    assert set(oids(owner, BIG)) == names(BIG)
    row = owner.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    assert row is not None and "USING hnsw" in row[0]
