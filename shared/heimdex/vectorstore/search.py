"""Hybrid search in one SQL statement: text-vector, image-vector and full-text ranks fused by RRF.

Each signal takes its own top `pool` candidates; reciprocal rank fusion (1 / (60 + rank)) adds up the
ranks. Row-level security confines every statement to the caller's organisation; the vector
candidates also name the organisation explicitly, which is what lets the planner use the
organisation's own index. How the vector candidates are found depends on the organisation's size
(measured at 1M scenes, BENCHMARKS.md "Search at scale"):

- at most `exact_max_rows` scenes (10,000 by default): exact distances over the organisation's rows
  (EXACT_SQL, one pass for both vectors), found through the primary key (org_id leads it). Vectors
  are halfvec stored in the row (003): no TOAST, no index, no recall loss, ~25 ms at 10,000 rows.
- larger: HNSW over a partial index of the organisation's own rows (orgindex.py), so the graph
  search needs no filter; `ef_search` is how many candidates it keeps (recall against latency).
  pgvector's iterative scan (`relaxed_order`) keeps scanning where a source filter drops rows, so
  the top-k stays full. The index stage builds an organisation's indexes when an ingest first takes
  it past the limit (orgindex.after_ingest). Until both of its vector indexes are built and valid
  (while they build, or after a failed build until the next ingest), or when it has many short
  videos but no more scenes than the limit, it is searched exactly: correct, only slower.

The size probe reads the organisation's assets rows, at most exact_max_rows / 10 of them (a video
is rarely under 10 scenes; an organisation with that many videos is taken as large), then, for a
large one, whether its graphs are there (pg_index, by name). The choice is made here, not by the
planner, which estimates `org_id = current_setting(..)` as 1/n_distinct of the table for every
organisation. Keyword candidates come from
heimdex_keyword_hits() (002_keyword_hits.sql): under row-level security `tsv @@ q` is not leakproof
and could never use the GIN index.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from psycopg.rows import dict_row

from heimdex.vectorstore import orgindex
from heimdex.vectorstore.store import Conn

RRF_K = 60
EF_SEARCH = 100  # defaults of Settings.search_ef_search / search_exact_max_rows
EXACT_MAX_ROWS = 10_000

_TAIL = """
keyword_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY rank DESC) AS r
  FROM heimdex_keyword_hits(%(or_q)s, %(source)s::text, %(pool)s, %(lang)s::text)
),
fused AS (
  SELECT asset_id, idx, sum(1.0 / (%(rrf_k)s + r)) AS score
  FROM (SELECT * FROM text_hits UNION ALL SELECT * FROM image_hits UNION ALL SELECT * FROM keyword_hits) u
  GROUP BY asset_id, idx
)
SELECT a.source, s.asset_id, s.idx, s.start_s, s.end_s, s.transcript, s.ocr_text, s.thumbnail, s.lang, f.score
FROM fused f
JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = f.asset_id AND s.idx = f.idx
JOIN assets a ON a.org_id = %(org)s AND a.asset_id = s.asset_id
ORDER BY f.score DESC, s.asset_id, s.idx
LIMIT %(k)s
"""
# The organisation is named as a constant in the joins too (row-level security confines them anyway):
# the policy's `(SELECT heimdex_current_org())` is an init plan, whose value the planner cannot see,
# so without it the planner took a large organisation's assets for a couple of rows and joined them
# in a nested loop (+0.6 ms a search at 21,000 scenes); with it, the organisation's statistics apply.

# Graph search: each signal through the organisation's HNSW index. With relaxed_order the index
# returns candidates only roughly by distance, and a window ordered by the same expression would
# trust the scan's order (PostgreSQL 18 passes it up even through a MATERIALIZED CTE):
# `ORDER BY d + 0` makes the ranks follow the exact distances.
SQL = (
    """
WITH text_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d + 0) AS r FROM (
    SELECT asset_id, idx, text_vec <=> %(qt)s::halfvec AS d FROM scenes
    WHERE org_id = %(org)s AND text_model = %(text_model)s
      AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
      AND (%(lang)s::text IS NULL OR lang = %(lang)s)
    ORDER BY text_vec <=> %(qt)s::halfvec LIMIT %(pool)s) t
),
image_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d + 0) AS r FROM (
    SELECT asset_id, idx, image_vec <=> %(qi)s::halfvec AS d FROM scenes
    WHERE %(qi)s::halfvec IS NOT NULL AND org_id = %(org)s AND image_model = %(image_model)s
      AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
      AND (%(lang)s::text IS NULL OR lang = %(lang)s)
    ORDER BY image_vec <=> %(qi)s::halfvec LIMIT %(pool)s) t
),"""
    + _TAIL
)

# Exact search for a small organisation: one pass over its rows computes both distances.
EXACT_SQL = (
    """
WITH cand AS MATERIALIZED (
  SELECT asset_id, idx,
    CASE WHEN text_model = %(text_model)s THEN text_vec <=> %(qt)s::halfvec END AS dt,
    CASE WHEN image_model = %(image_model)s THEN image_vec <=> %(qi)s::halfvec END AS di
  FROM scenes
  WHERE org_id = %(org)s AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
    AND (%(lang)s::text IS NULL OR lang = %(lang)s)
),
text_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY dt) AS r FROM (
    SELECT asset_id, idx, dt FROM cand WHERE dt IS NOT NULL ORDER BY dt LIMIT %(pool)s) t
),
image_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY di) AS r FROM (
    SELECT asset_id, idx, di FROM cand WHERE di IS NOT NULL ORDER BY di LIMIT %(pool)s) t
),"""
    + _TAIL
)

# The caller's organisation as row-level security sees it (set by db.org_tx and verified by
# heimdex_current_org(), migration 005; NULL if unset or forged), and its videos and scenes from
# assets (RLS applies), reading at most %(videos)s rows.
PROBE_SQL = """
SELECT heimdex_current_org(), count(*), coalesce(sum(scenes), 0)
FROM (SELECT scenes FROM assets LIMIT %(videos)s) a
"""


def or_query(query: str) -> str:
    """A tsquery source matching any of the query's words, so partial lexical matches still rank
    (ts_rank_cd puts scenes with more of the words first). Words are quoted: never tsquery syntax."""
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1][:32]
    return " | ".join(f"'{w}'" for w in words)  # "" is an empty tsquery: no keyword hits


# Whether both vector indexes of an organisation exist and are valid (a CONCURRENTLY build in
# progress, or one that failed, leaves an invalid index the planner does not use).
GRAPHS_SQL = """
SELECT count(*) = 2 AND bool_and(indisvalid) FROM pg_index
WHERE indexrelid IN (to_regclass(%(text)s), to_regclass(%(image)s))
"""


def plan(conn: Conn, exact_max_rows: int = EXACT_MAX_ROWS) -> tuple[str | None, str]:
    """(organisation, "exact" | "hnsw") for the current org-scoped transaction."""
    videos = max(exact_max_rows // 10, 1)
    row = conn.execute(PROBE_SQL, {"videos": videos}).fetchone()
    if row is None or not row[0]:
        return None, "exact"
    org = str(row[0])
    if row[1] < videos and row[2] <= exact_max_rows:
        return org, "exact"
    names = {s: orgindex.index_name(org, s) for s in ("text", "image")}
    graphs = conn.execute(GRAPHS_SQL, names).fetchone()
    return org, ("hnsw" if graphs and graphs[0] else "exact")


def search(
    conn: Conn,
    query: str,
    *,
    text_vec: np.ndarray,
    text_model: str,
    image_vec: np.ndarray | None = None,
    image_model: str | None = None,
    k: int = 10,
    source: str | None = None,
    ef_search: int = EF_SEARCH,
    exact_max_rows: int = EXACT_MAX_ROWS,
    path: Literal["auto", "exact", "hnsw"] = "auto",
    lang: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of the top-k scenes; run inside db.org_tx so RLS applies. `path` is chosen by the
    organisation's size (`plan`) unless given: "exact" (the ground truth a benchmark measures
    recall against) or "hnsw" (the graph query even for a small organisation). `lang`: only scenes
    spoken in this language (ISO 639-1); keywords are matched in each scene's own language
    (009_languages.sql)."""
    org, how = plan(conn, exact_max_rows)
    if org is None:  # no organisation set: row-level security would show nothing anyway
        return []
    if path != "auto":
        how = path
    pool = max(4 * k, 40)
    if how == "hnsw":
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(pool, ef_search))}")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            SQL if how == "hnsw" else EXACT_SQL,
            {
                "org": org,
                "or_q": or_query(query),
                "qt": text_vec,
                "qi": image_vec,
                "text_model": text_model,
                "image_model": image_model,
                "pool": pool,
                "k": k,
                "source": source,
                "lang": lang,
                "rrf_k": RRF_K,
            },
        ).fetchall()
