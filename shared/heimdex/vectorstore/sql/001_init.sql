-- Heimdex index schema, version 1.
CREATE EXTENSION IF NOT EXISTS vector;

DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app_role}') THEN
    CREATE ROLE {app_role} NOLOGIN;
  END IF;
END $$;

CREATE TABLE assets (
  org_id      text NOT NULL,
  asset_id    text NOT NULL,
  source      text NOT NULL,
  version     text NOT NULL,
  status      text NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
  error       text,
  duration    double precision,
  scenes      integer NOT NULL DEFAULT 0,
  sidecar     text,
  text_model  text,
  image_model text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, asset_id)
);
CREATE INDEX assets_org_source ON assets (org_id, source);

CREATE TABLE scenes (
  org_id      text NOT NULL,
  asset_id    text NOT NULL,
  idx         integer NOT NULL,
  source      text NOT NULL,
  start_s     double precision NOT NULL,
  end_s       double precision NOT NULL,
  transcript  text NOT NULL DEFAULT '',
  ocr_text    text NOT NULL DEFAULT '',
  people      text[] NOT NULL DEFAULT '{}',
  thumbnail   text,
  text_vec    vector({text_dim}),
  image_vec   vector({image_dim}),
  text_model  text,
  image_model text,
  tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', transcript), 'A') || setweight(to_tsvector('english', ocr_text), 'B')
  ) STORED,
  PRIMARY KEY (org_id, asset_id, idx),
  FOREIGN KEY (org_id, asset_id) REFERENCES assets ON DELETE CASCADE
);
CREATE INDEX scenes_text_hnsw ON scenes USING hnsw (text_vec vector_cosine_ops);
CREATE INDEX scenes_image_hnsw ON scenes USING hnsw (image_vec vector_cosine_ops);
CREATE INDEX scenes_tsv ON scenes USING gin (tsv);

CREATE TABLE jobs (
  job_id     text PRIMARY KEY,
  org_id     text NOT NULL,
  asset_id   text NOT NULL,
  source     text NOT NULL,
  status     text NOT NULL CHECK (status IN ('running', 'ready', 'failed')),
  stages     jsonb NOT NULL DEFAULT '{}',
  error      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_org ON jobs (org_id);

-- Row-level security: every application statement sees one organisation, set per transaction.
ALTER TABLE assets ENABLE ROW LEVEL SECURITY;
ALTER TABLE assets FORCE ROW LEVEL SECURITY;
ALTER TABLE scenes ENABLE ROW LEVEL SECURITY;
ALTER TABLE scenes FORCE ROW LEVEL SECURITY;
ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON assets
  USING (org_id = current_setting('heimdex.org_id', true))
  WITH CHECK (org_id = current_setting('heimdex.org_id', true));
CREATE POLICY org_isolation ON scenes
  USING (org_id = current_setting('heimdex.org_id', true))
  WITH CHECK (org_id = current_setting('heimdex.org_id', true));
CREATE POLICY org_isolation ON jobs
  USING (org_id = current_setting('heimdex.org_id', true))
  WITH CHECK (org_id = current_setting('heimdex.org_id', true));

GRANT USAGE ON SCHEMA public TO {app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON assets, scenes, jobs TO {app_role};
