"""Hybrid search in one SQL statement: text-vector, image-vector and full-text ranks fused by RRF.

Each signal takes its own top `pool` candidates through its index (HNSW for vectors, GIN for text);
reciprocal rank fusion (1 / (60 + rank)) adds up the ranks. Row-level security confines every CTE to
the caller's organisation; pgvector's iterative index scan keeps scanning until enough rows pass that
filter (and any source filter), so a small organisation in a large index still gets a full top-k.
Keyword candidates come from heimdex_keyword_hits() (002_keyword_hits.sql): under row-level security
`tsv @@ q` is not leakproof and could never use the GIN index, so a keyword search read every row.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from psycopg.rows import dict_row

from heimdex.index.store import Conn

RRF_K = 60

SQL = """
WITH text_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d) AS r FROM (
    SELECT asset_id, idx, text_vec <=> %(qt)s AS d FROM scenes
    WHERE text_model = %(text_model)s AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
    ORDER BY text_vec <=> %(qt)s LIMIT %(pool)s) t
),
image_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY d) AS r FROM (
    SELECT asset_id, idx, image_vec <=> %(qi)s AS d FROM scenes
    WHERE %(qi)s::vector IS NOT NULL AND image_model = %(image_model)s
      AND (%(source)s::text IS NULL OR starts_with(source, %(source)s))
    ORDER BY image_vec <=> %(qi)s LIMIT %(pool)s) t
),
keyword_hits AS (
  SELECT asset_id, idx, row_number() OVER (ORDER BY rank DESC) AS r
  FROM heimdex_keyword_hits(to_tsquery('english', %(or_q)s), %(source)s::text, %(pool)s)
),
fused AS (
  SELECT asset_id, idx, sum(1.0 / (%(rrf_k)s + r)) AS score
  FROM (SELECT * FROM text_hits UNION ALL SELECT * FROM image_hits UNION ALL SELECT * FROM keyword_hits) u
  GROUP BY asset_id, idx
)
SELECT a.source, s.asset_id, s.idx, s.start_s, s.end_s, s.transcript, s.ocr_text, s.thumbnail, f.score
FROM fused f
JOIN scenes s USING (asset_id, idx)
JOIN assets a ON a.org_id = s.org_id AND a.asset_id = s.asset_id
ORDER BY f.score DESC, s.asset_id, s.idx
LIMIT %(k)s
"""


def or_query(query: str) -> str:
    """A tsquery source matching any of the query's words, so partial lexical matches still rank
    (ts_rank_cd puts scenes with more of the words first). Words are quoted: never tsquery syntax."""
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1][:32]
    return " | ".join(f"'{w}'" for w in words)  # "" is an empty tsquery: no keyword hits


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
) -> list[dict[str, Any]]:
    """Rows of the top-k scenes; run inside db.org_tx so RLS applies."""
    pool = max(4 * k, 40)
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(pool, 40))}")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            SQL,
            {
                "or_q": or_query(query),
                "qt": text_vec,
                "qi": image_vec,
                "text_model": text_model,
                "image_model": image_model,
                "pool": pool,
                "k": k,
                "source": source,
                "rrf_k": RRF_K,
            },
        ).fetchall()
