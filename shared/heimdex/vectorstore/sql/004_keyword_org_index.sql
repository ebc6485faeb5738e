-- Heimdex index schema, version 4: a large organisation's keyword search uses its own GIN index.
--
-- Measured at 1M scenes (BENCHMARKS.md, "Search at scale"): for an organisation holding 35% of the
-- rows, the shared GIN index on tsv had to be ANDed with a bitmap of the organisation's 350,000
-- primary-key entries, or the search read other organisations' matching rows instead; its keyword
-- search took p95 63 ms, most of a hybrid search's time. heimdex.index.orgindex now gives each large
-- organisation a partial GIN index (`... USING gin (tsv) WHERE org_id = 'x'`), as it gives it partial
-- HNSW indexes: p95 12 ms for the same searches, same results. The planner can only use a partial
-- index when the query names the organisation as a constant, so the function now builds its
-- statement with the organisation written in as a literal (format %L; NULL when the setting is
-- unset, which matches nothing). What it returns is unchanged (002): the caller's organisation only,
-- ranked by ts_rank_cd.
CREATE OR REPLACE FUNCTION heimdex_keyword_hits(q tsquery, source_prefix text, n integer)
RETURNS TABLE (asset_id text, idx integer, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'SELECT s.asset_id, s.idx, ts_rank_cd(s.tsv, $1)'
    ' FROM public.scenes s'
    ' WHERE s.org_id = %L AND s.tsv @@ $1 AND ($2 IS NULL OR starts_with(s.source, $2))'
    ' ORDER BY 3 DESC LIMIT $3',
    current_setting('heimdex.org_id', true))
  USING q, source_prefix, n;
END
$$;
