-- One-time sign-in links of the web app (issue 16): `heimdex serve` and `heimdex token --login` make
-- them, the server redeems them, and those are different processes, so the state lives here. Only
-- a SHA-256 of the link's secret is stored (a copy of the table signs no one in). A link names its
-- organisation in the clear (<org>.<secret>), so redeeming it runs in that organisation's
-- transaction under the same row-level security as every other table: a link altered to name
-- another organisation finds no row.

CREATE TABLE signin_links (
  org_id      text NOT NULL,
  token_hash  text NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, token_hash)
);
CREATE INDEX signin_links_expiry ON signin_links (org_id, expires_at);

ALTER TABLE signin_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE signin_links FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON signin_links
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY owner_maintenance ON signin_links TO CURRENT_USER USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON signin_links TO {app_role};
