"""Hybrid search in one SQL statement: text-vector, image-vector, sentence/caption-vector and full-text
ranks fused by RRF. A hit spans its scene and the sentence or on-screen text of it that matched best
(scene_units, 007), so it plays from that sentence's first word.

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
from datetime import datetime
from typing import Any, Literal

import numpy as np
from psycopg.rows import dict_row

from heimdex.media.textnorm import keyword_variants
from heimdex.vectorstore import orgindex
from heimdex.vectorstore.store import Conn

RRF_K = 60
EF_SEARCH = 100  # defaults of Settings.search_ef_search / search_exact_max_rows
EXACT_MAX_ROWS = 10_000

_KEYWORDS = """
keyword_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY rank DESC) AS r
  FROM heimdex_keyword_hits(%(or_q)s, %(source)s::text, %(pool)s, %(lang)s::text)
  {keyword_filters}
),"""
_TAIL = """
fused AS (
  SELECT asset_id, idx, sum(1.0 / (%(rrf_k)s + r)) AS score
  FROM (SELECT * FROM text_hits UNION ALL SELECT * FROM image_hits UNION ALL SELECT * FROM keyword_hits
        UNION ALL SELECT * FROM unit_hits) u
  GROUP BY asset_id, idx
)
SELECT a.source, s.asset_id, s.idx,
  least(s.start_s, coalesce(ub.start_s, s.start_s)) AS start_s,
  greatest(s.end_s, coalesce(ub.end_s, s.end_s)) AS end_s,
  s.transcript, s.ocr_text, s.thumbnail, s.lang, f.score
FROM fused f
JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = f.asset_id AND s.idx = f.idx
JOIN assets a ON a.org_id = %(org)s AND a.asset_id = s.asset_id
LEFT JOIN unit_best ub ON ub.asset_id = s.asset_id AND ub.idx = s.idx
ORDER BY f.score DESC, s.asset_id, s.idx
LIMIT %(k)s OFFSET %(offset)s
"""
# Sentences and on-screen texts (scene_units, 007): each scene's best unit by exact distance, one more
# rank, and the span a hit plays. Exact search: over the organisation's units of the candidate scenes
# (`cand`: every scene the search's filters hold).
UNITS_EXACT = """
unit_best AS MATERIALIZED (
  SELECT DISTINCT ON (asset_id, idx) asset_id, idx, start_s, end_s, d FROM (
    SELECT asset_id, idx, start_s, end_s, text_vec <=> %(qt)s::halfvec AS d FROM scene_units
    WHERE org_id = %(org)s AND text_model = %(text_model)s
      AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
      AND EXISTS (SELECT FROM cand c WHERE c.asset_id = scene_units.asset_id AND c.idx = scene_units.idx)
    ORDER BY text_vec <=> %(qt)s::halfvec LIMIT %(unit_pool)s) u
  ORDER BY asset_id, idx, d
),
unit_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d) AS r FROM (
    SELECT asset_id, idx, d FROM unit_best ORDER BY d LIMIT %(pool)s) t
),
"""
# Graph search (a large organisation): units have no index (scanning millions of them per query is not
# an option), so the units ranked are those of the scenes the other signals found (text, image and
# keyword candidates, `pool` each: at most 3 * pool scenes, read through scene_units' primary key). A
# sentence whose scene none of the other signals finds is not found this way; among the candidates the
# unit rank and the hit's span are the exact path's.
UNITS_GRAPH = """
unit_best AS MATERIALIZED (
  SELECT DISTINCT ON (u.asset_id, u.idx) u.asset_id, u.idx, u.start_s, u.end_s,
    u.text_vec <=> %(qt)s::halfvec AS d
  FROM (SELECT asset_id, idx FROM text_hits UNION SELECT asset_id, idx FROM image_hits
        UNION SELECT asset_id, idx FROM keyword_hits) c
  JOIN scene_units u ON u.org_id = %(org)s AND u.asset_id = c.asset_id AND u.idx = c.idx
  WHERE u.text_model = %(text_model)s
  ORDER BY u.asset_id, u.idx, d
),
unit_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d) AS r FROM (
    SELECT asset_id, idx, d FROM unit_best ORDER BY d LIMIT %(pool)s) t
),
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
      {filters}
    ORDER BY text_vec <=> %(qt)s::halfvec LIMIT %(pool)s) t
),
image_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d + 0) AS r FROM (
    SELECT asset_id, idx, image_vec <=> %(qi)s::halfvec AS d FROM scenes
    WHERE %(qi)s::halfvec IS NOT NULL AND org_id = %(org)s AND image_model = %(image_model)s
      AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
      {filters}
    ORDER BY image_vec <=> %(qi)s::halfvec LIMIT %(pool)s) t
),"""
    + _KEYWORDS
    + UNITS_GRAPH
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
    {filters}
),
text_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY dt) AS r FROM (
    SELECT asset_id, idx, dt FROM cand WHERE dt IS NOT NULL ORDER BY dt LIMIT %(pool)s) t
),
image_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY di) AS r FROM (
    SELECT asset_id, idx, di FROM cand WHERE di IS NOT NULL ORDER BY di LIMIT %(pool)s) t
),"""
    + UNITS_EXACT
    + _KEYWORDS
    + _TAIL
)


# Search filters (issue 14), written into each candidate query above as `{filters}` and onto the
# keyword candidates as `{keyword_filters}`; every one is a no-op when its parameter is NULL:
# `asset` (one asset id), `lang` (the scene's spoken language), `kind` ('speech': scenes with a
# transcript; 'text': with on-screen text),
# `after`/`before` (the asset's date: when this version was first indexed, assets.created_at).
def _filters(col: str) -> str:
    return f"""AND (%(asset)s::text IS NULL OR {col}asset_id = %(asset)s::text)
      AND (%(lang)s::text IS NULL OR {col}lang = %(lang)s::text)
      AND (%(kind)s::text IS NULL OR (%(kind)s::text = 'speech' AND {col}transcript <> '')
           OR (%(kind)s::text = 'text' AND {col}ocr_text <> ''))
      AND ((%(after)s::timestamptz IS NULL AND %(before)s::timestamptz IS NULL) OR {col}asset_id IN (
        SELECT d.asset_id FROM assets d WHERE d.org_id = %(org)s
          AND (%(after)s::timestamptz IS NULL OR d.created_at >= %(after)s::timestamptz)
          AND (%(before)s::timestamptz IS NULL OR d.created_at < %(before)s::timestamptz)))"""


def scene_filters(col: str) -> str:
    """The source prefix and the filters above on a scenes alias (`col`, e.g. "s."), for queries that
    choose their candidate scenes another way (heimdex.vectorstore.people: a person's scenes)."""
    return f"AND (%(source)s::text IS NULL OR starts_with({col}source, %(source)s))\n      {_filters(col)}"


KEYWORD_FILTERS = f"""WHERE (%(asset)s::text IS NULL AND %(kind)s::text IS NULL
    AND %(after)s::timestamptz IS NULL AND %(before)s::timestamptz IS NULL)
    OR EXISTS (SELECT FROM scenes ks WHERE ks.org_id = %(org)s
      AND ks.asset_id = heimdex_keyword_hits.asset_id AND ks.idx = heimdex_keyword_hits.idx
      {_filters("ks.")})"""
SQL = SQL.replace("{filters}", _filters("")).replace("{keyword_filters}", KEYWORD_FILTERS)
EXACT_SQL = EXACT_SQL.replace("{filters}", _filters("")).replace("{keyword_filters}", KEYWORD_FILTERS)
SearchKind = Literal["speech", "text"]
# The filter parameters of a search without filters (for callers that run SQL / EXACT_SQL themselves).
NO_FILTERS: dict[str, Any] = {
    "asset": None,
    "kind": None,
    "after": None,
    "before": None,
    "lang": None,
    "offset": 0,
}


# The caller's organisation as row-level security sees it (set by db.org_tx and verified by
# heimdex_current_org(), migration 005; NULL if unset or forged), and its videos and scenes from
# assets (RLS applies), reading at most %(videos)s rows.
PROBE_SQL = """
SELECT heimdex_current_org(), count(*), coalesce(sum(scenes), 0)
FROM (SELECT scenes FROM assets LIMIT %(videos)s) a
"""


def or_query(query: str) -> str:
    """A tsquery source matching any of the query's words, so partial lexical matches still rank
    (ts_rank_cd puts scenes with more of the words first). Words are quoted: never tsquery syntax.
    Each word's other spellings count too (textnorm.keyword_variants: "14%" / "fourteen percent",
    neighbouring words run together as OCR may have read them)."""
    words = [w for w in keyword_variants(query) if (len(w) > 1 or w.isdigit()) and re.fullmatch(r"\w+", w)]
    words = words[:48]
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
    asset: str | None = None,
    kind: SearchKind | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    lang: str | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows of the top-k scenes; run inside db.org_tx so RLS applies. `path` is chosen by the
    organisation's size (`plan`) unless given: "exact" (the ground truth a benchmark measures
    recall against) or "hnsw" (the graph query even for a small organisation). Filters (`asset`,
    `kind`, `after`, `before`, `lang`: only scenes spoken in this language, ISO 639-1) narrow the
    candidates; `offset` skips the first hits (a page). Keywords are matched in each scene's own
    language (009_languages.sql)."""
    org, how = plan(conn, exact_max_rows)
    if org is None:  # no organisation set: row-level security would show nothing anyway
        return []
    if path != "auto":
        how = path
    pool = max(4 * (k + offset), 40)
    if how == "hnsw":
        # One round trip for both settings (simple protocol: no parameters, an integer literal).
        conn.execute(
            "SET LOCAL hnsw.iterative_scan = relaxed_order;"
            f" SET LOCAL hnsw.ef_search = {int(max(pool, ef_search))}"
        )
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
                "unit_pool": 4 * pool,
                "k": k,
                "source": source,
                "lang": lang,
                "rrf_k": RRF_K,
                "asset": asset,
                "kind": kind,
                "after": after,
                "before": before,
                "offset": offset,
            },
        ).fetchall()
