-- Heimdex index schema, issue 14: what the asset API keeps besides assets and scenes.
--
-- deleted_sources: a version of a source that was deleted through the API (DELETE /v1/assets/{id}).
-- Its original stays where it is, so a folder re-index, a repeated bucket event or a Drive change
-- notification would find it again: ingest skips a (source, version) recorded here, and a changed
-- file (a new version, so a new asset id) is indexed as usual.
-- uploads: files sent to POST /v1/uploads, keyed by the caller's Idempotency-Key so a repeated
-- request answers the same upload.
CREATE TABLE deleted_sources (
  org_id     text NOT NULL,
  asset_id   text NOT NULL,
  source     text NOT NULL,
  version    text NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, asset_id)
);
CREATE INDEX deleted_sources_source ON deleted_sources (org_id, source, version);

CREATE TABLE uploads (
  org_id          text NOT NULL,
  upload_id       text NOT NULL,
  idempotency_key text,
  filename        text NOT NULL,
  size            bigint NOT NULL,
  content_type    text NOT NULL,
  source          text NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending', 'receiving', 'received', 'indexing', 'ready', 'failed')),
  asset_id        text,
  error           text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, upload_id),
  UNIQUE (org_id, idempotency_key)
);

ALTER TABLE deleted_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE deleted_sources FORCE ROW LEVEL SECURITY;
ALTER TABLE uploads ENABLE ROW LEVEL SECURITY;
ALTER TABLE uploads FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON deleted_sources
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY org_isolation ON uploads
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY owner_maintenance ON deleted_sources TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON uploads TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON deleted_sources, uploads TO {app_role};
