-- Heimdex index schema, version 2: keyword search through the GIN index under row-level security.
--
-- With row-level security PostgreSQL evaluates a query's own conditions after the policy's unless
-- their functions are LEAKPROOF. `tsvector @@ tsquery` (ts_match_vq) is not, so `tsv @@ q` in a query
-- run as {app_role} can never be an index condition on scenes_tsv: every keyword search read the whole
-- table (measured: ~0.3 s at 200k scenes, growing linearly). This function takes the keyword
-- candidates as the schema owner, with the policy's own organisation condition written out, so the
-- GIN index is used. It returns only the caller's organisation (the same `heimdex.org_id` setting the
-- policy reads; NULL when unset, which matches nothing). Where the owner is itself subject to the
-- forced policy (a non-superuser owner without BYPASSRLS) the policy still applies inside: correct,
-- only without the index.
CREATE FUNCTION heimdex_keyword_hits(q tsquery, source_prefix text, n integer)
RETURNS TABLE (asset_id text, idx integer, rank real)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
  SELECT s.asset_id, s.idx, ts_rank_cd(s.tsv, q)
  FROM public.scenes s
  WHERE s.org_id = current_setting('heimdex.org_id', true)
    AND s.tsv @@ q
    AND (source_prefix IS NULL OR starts_with(s.source, source_prefix))
  ORDER BY 3 DESC
  LIMIT n
$$;
REVOKE ALL ON FUNCTION heimdex_keyword_hits(tsquery, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION heimdex_keyword_hits(tsquery, text, integer) TO {app_role};
