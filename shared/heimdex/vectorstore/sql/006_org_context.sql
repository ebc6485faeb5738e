-- Heimdex index schema, version 6: an organisation context that SQL cannot forge.
--
-- Until now the application connected as the owner and switched to {app_role} per transaction, and
-- the policies trusted the setting heimdex.org_id, which any role may set: SQL reaching that
-- connection could RESET ROLE, or set another organisation. Now every request path logs in as the
-- application role itself (heimdex.index.connect; not the owner, not a superuser, no BYPASSRLS), and
-- the policies accept heimdex.org_id only together with heimdex.org_mac, an HMAC-SHA256 of the
-- organisation under a key that belongs to the database session:
--
-- - when the application's pool opens a session it generates a random key and registers it with
--   heimdex_open_session() before the session serves anything. A session registers once: a second
--   call (SQL trying to learn or replace the key) is refused. The key stays in the application's
--   memory and in heimdex_sessions, which only the owner can read.
-- - db.org_tx sets heimdex.org_id and heimdex.org_mac for its transaction; heimdex_current_org()
--   returns the organisation only if the MAC verifies with the session's key, else NULL, which
--   matches no row. SQL can read its own transaction's pair, useless for any other organisation,
--   and cannot compute another's without the key.
--
-- HMAC-SHA256 is computed with the built-in sha256() (pgcrypto is not in the embedded build): the
-- application sends the key's inner and outer pads, the function hashes pad || message as RFC 2104
-- does. Policies call the function as `(SELECT heimdex_current_org())`, an init plan evaluated once
-- per statement, so a search still names its organisation's rows by index (EXPLAIN in
-- tests/test_rls_role.py).
--
-- Also: the owner (non-superuser on Cloud SQL, where FORCE row level security applies to it too) gets
-- a policy of its own for migrations and index maintenance; PUBLIC loses TEMPORARY on the database
-- (a temporary table named `scenes` made by one request would shadow the real one for the next
-- request of another organisation on that pooled session) and CREATE on schema public.

CREATE TABLE heimdex_sessions (
  pid           integer PRIMARY KEY,
  backend_start timestamptz NOT NULL,
  inner_pad     bytea NOT NULL CHECK (length(inner_pad) = 64),
  outer_pad     bytea NOT NULL CHECK (length(outer_pad) = 64)
);
REVOKE ALL ON heimdex_sessions FROM PUBLIC;

CREATE FUNCTION heimdex_open_session(inner_key bytea, outer_key bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
  started timestamptz;
BEGIN
  SELECT a.backend_start INTO started FROM pg_stat_get_activity(pg_backend_pid()) a;
  IF started IS NULL THEN
    RAISE EXCEPTION 'cannot identify this session' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF EXISTS (SELECT FROM public.heimdex_sessions s
             WHERE s.pid = pg_backend_pid() AND s.backend_start = started) THEN
    RAISE EXCEPTION 'this session has its organisation key already' USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Sessions that ended (their pid is no longer a backend), and an earlier session with this pid.
  DELETE FROM public.heimdex_sessions s
  WHERE NOT EXISTS (SELECT FROM pg_stat_get_activity(NULL) a WHERE a.pid = s.pid);
  INSERT INTO public.heimdex_sessions AS s VALUES (pg_backend_pid(), started, inner_key, outer_key)
  ON CONFLICT (pid) DO UPDATE
    SET backend_start = EXCLUDED.backend_start, inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad;
END
$$;

CREATE FUNCTION heimdex_current_org() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, public
AS $$
  SELECT c.org
  FROM (SELECT current_setting('heimdex.org_id', true) AS org,
               current_setting('heimdex.org_mac', true) AS mac) c
  JOIN public.heimdex_sessions s ON s.pid = pg_backend_pid()
  WHERE c.mac = encode(sha256(s.outer_pad || sha256(s.inner_pad || convert_to(c.org, 'UTF8'))), 'hex')
$$;

REVOKE ALL ON FUNCTION heimdex_open_session(bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION heimdex_current_org() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION heimdex_open_session(bytea, bytea) TO {app_role};
GRANT EXECUTE ON FUNCTION heimdex_current_org() TO {app_role};

ALTER POLICY org_isolation ON assets
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
ALTER POLICY org_isolation ON scenes
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
ALTER POLICY org_isolation ON jobs
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));

CREATE POLICY owner_maintenance ON assets TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON scenes TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON jobs TO CURRENT_USER USING (true) WITH CHECK (true);

-- Keyword candidates (004), for the verified organisation only.
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
    public.heimdex_current_org())
  USING q, source_prefix, n;
END
$$;

-- An application session that is not the owner reads the schema version (db.check_schema).
GRANT SELECT ON schema_migrations TO {app_role};

DO $$ BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
