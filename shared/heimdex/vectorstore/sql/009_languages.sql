-- Heimdex index schema: speech in any language (issue 18).
--
-- Scenes carry `lang`, the language most of their words were spoken in (ISO 639-1, NULL without
-- speech); assets carry their dominant language and, for an English-only model, a note when their
-- speech may not be English. A scene's keywords are stemmed with the PostgreSQL text-search
-- configuration of its language (heimdex_ts_config: `german` for de, ...; `simple`, no stemming, for
-- a language PostgreSQL has no configuration for; `english` for scenes without speech, whose
-- on-screen text is read with Tesseract's English data by default), so "Brände" finds "Brand".
--
-- The generated tsv column is made again with the scene's configuration (PostgreSQL 16 cannot change
-- a generated expression in place): the table is rewritten once, and the dedicated keyword indexes of
-- large organisations (orgindex) go with the column; orgindex builds them again at the next ingest
-- or maintenance run, and until then those organisations' keyword candidates come from scenes_tsv.

ALTER TABLE scenes ADD COLUMN lang text;
ALTER TABLE assets ADD COLUMN lang text, ADD COLUMN lang_note text;

-- Language code -> text-search configuration, for the configurations this server has (built from
-- pg_ts_config, so a server without one of them maps that language to `simple`).
DO $$
DECLARE
  wanted CONSTANT text[][] := ARRAY[
    ['ar', 'arabic'], ['hy', 'armenian'], ['eu', 'basque'], ['ca', 'catalan'], ['da', 'danish'],
    ['nl', 'dutch'], ['en', 'english'], ['fi', 'finnish'], ['fr', 'french'], ['de', 'german'],
    ['el', 'greek'], ['hi', 'hindi'], ['hu', 'hungarian'], ['id', 'indonesian'], ['ga', 'irish'],
    ['it', 'italian'], ['lt', 'lithuanian'], ['ne', 'nepali'], ['no', 'norwegian'], ['nn', 'norwegian'],
    ['pt', 'portuguese'], ['ro', 'romanian'], ['ru', 'russian'], ['sr', 'serbian'], ['es', 'spanish'],
    ['sv', 'swedish'], ['ta', 'tamil'], ['tr', 'turkish'], ['yi', 'yiddish']];
  body text := 'SELECT CASE WHEN lang IS NULL THEN ''pg_catalog.english''::regconfig';
  i integer;
BEGIN
  FOR i IN 1 .. array_length(wanted, 1) LOOP
    IF EXISTS (SELECT FROM pg_catalog.pg_ts_config c
               WHERE c.cfgname = wanted[i][2] AND c.cfgnamespace = 'pg_catalog'::regnamespace) THEN
      body := body || format(' WHEN lang = %L THEN %L::regconfig', wanted[i][1], 'pg_catalog.' || wanted[i][2]);
    END IF;
  END LOOP;
  body := body || ' ELSE ''pg_catalog.simple''::regconfig END';
  EXECUTE format(
    'CREATE FUNCTION heimdex_ts_config(lang text) RETURNS regconfig'
    ' LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS %L', body);
END $$;
GRANT EXECUTE ON FUNCTION heimdex_ts_config(text) TO {app_role};

ALTER TABLE scenes DROP COLUMN tsv;
ALTER TABLE scenes ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
  setweight(to_tsvector(public.heimdex_ts_config(lang), transcript), 'A')
  || setweight(to_tsvector(public.heimdex_ts_config(lang), ocr_text), 'B')
) STORED;
CREATE INDEX scenes_tsv ON scenes USING gin (tsv);

-- The languages an organisation's scenes are in, so a search parses its query only with their
-- configurations (each parse costs ~30 us; all 29 would add ~1 ms to every search). Written with the
-- scenes (store.replace_scenes); never pruned: a language whose scenes are gone costs one parse.
CREATE TABLE scene_languages (
  org_id text NOT NULL,
  lang   text NOT NULL,
  PRIMARY KEY (org_id, lang)
);
ALTER TABLE scene_languages ENABLE ROW LEVEL SECURITY;
ALTER TABLE scene_languages FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON scene_languages
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY owner_maintenance ON scene_languages TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON scene_languages TO {app_role};

-- Keyword candidates (002, 004, 006) in every scene's own language. The index finds candidates with
-- the query parsed by the configurations of the organisation's languages at once (one tsquery, OR;
-- `english` alone for an organisation whose speech is all English); each candidate then has to
-- match, and is ranked by, the query parsed by its own language's configuration: an English scene
-- matches and ranks exactly as it did with to_tsquery('english', ...). `q` is tsquery source text
-- (quoted words joined by |, heimdex.vectorstore.search.or_query); `lang`, when given, keeps only
-- scenes in that language and parses the query with its configuration alone.
DROP FUNCTION heimdex_keyword_hits(tsquery, text, integer);
CREATE FUNCTION heimdex_keyword_hits(q text, source_prefix text, n integer, lang text DEFAULT NULL)
RETURNS TABLE (asset_id text, idx integer, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
  org text := public.heimdex_current_org();
  any_q tsquery;
BEGIN
  IF lang IS NOT NULL THEN
    any_q := to_tsquery(public.heimdex_ts_config(lang), q);
  ELSE
    SELECT string_agg('(' || p.parsed || ')', ' | ')::tsquery INTO any_q
    FROM (SELECT DISTINCT to_tsquery(c.cfg, q)::text AS parsed
          FROM (SELECT DISTINCT public.heimdex_ts_config(l.lang) AS cfg
                FROM (SELECT NULL::text AS lang
                      UNION ALL
                      SELECT s.lang FROM public.scene_languages s WHERE s.org_id = org) l) c) p
    WHERE p.parsed <> '';
  END IF;
  IF any_q IS NULL OR any_q::text = '' THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT s.asset_id, s.idx, ts_rank_cd(s.tsv, to_tsquery(public.heimdex_ts_config(s.lang), $4))'
    ' FROM public.scenes s'
    ' WHERE s.org_id = %L AND s.tsv @@ $1 AND s.tsv @@ to_tsquery(public.heimdex_ts_config(s.lang), $4)'
    ' AND ($2 IS NULL OR starts_with(s.source, $2)) AND ($5::text IS NULL OR s.lang = $5)'
    ' ORDER BY 3 DESC LIMIT $3',
    org)
  USING any_q, source_prefix, n, q, lang;
END
$$;
REVOKE ALL ON FUNCTION heimdex_keyword_hits(text, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION heimdex_keyword_hits(text, text, integer, text) TO {app_role};
