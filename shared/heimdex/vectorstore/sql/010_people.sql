-- People (issue 15): face tracks and the people they are grouped into, per organisation.
--
-- faces: one row per face track (one person within one shot) of an asset, or per enrolment photo
-- (asset_id NULL). The embedding is dlib's 128-d ResNet vector (Euclidean distances; NULL once the
-- person was forgotten). scene_lo..scene_hi are the asset's scenes the track overlaps. Deleting an
-- asset deletes its faces (ON DELETE CASCADE), whatever deletes it.
-- people: id, name (NULL: not named yet), cover face. Counts are computed from faces when read.

CREATE TABLE people (
  org_id     text NOT NULL,
  person_id  bigint GENERATED ALWAYS AS IDENTITY,
  name       text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
  cover_face bigint,
  forgotten  boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, person_id)
);
CREATE INDEX people_org_name ON people (org_id, lower(name));

CREATE TABLE faces (
  org_id     text NOT NULL,
  face_id    bigint GENERATED ALWAYS AS IDENTITY,
  asset_id   text,
  start_s    double precision NOT NULL DEFAULT 0,
  end_s      double precision NOT NULL DEFAULT 0,
  scene_lo   integer,
  scene_hi   integer,
  box        real[] NOT NULL DEFAULT '{}',
  quality    real NOT NULL DEFAULT 0,
  embedding  vector(128),
  model      text,
  thumbnail  text,
  person_id  bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, face_id),
  FOREIGN KEY (org_id, asset_id) REFERENCES assets ON DELETE CASCADE,
  FOREIGN KEY (org_id, person_id) REFERENCES people ON DELETE SET NULL (person_id)
);
CREATE INDEX faces_org_asset ON faces (org_id, asset_id, scene_lo, scene_hi);
CREATE INDEX faces_org_person ON faces (org_id, person_id, asset_id, scene_lo, scene_hi);

ALTER TABLE people ENABLE ROW LEVEL SECURITY;
ALTER TABLE people FORCE ROW LEVEL SECURITY;
ALTER TABLE faces ENABLE ROW LEVEL SECURITY;
ALTER TABLE faces FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON people
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY org_isolation ON faces
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY owner_maintenance ON people TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON faces TO CURRENT_USER USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON people, faces TO {app_role};
