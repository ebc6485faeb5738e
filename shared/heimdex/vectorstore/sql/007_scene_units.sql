-- Heimdex index schema, version 7 (issue 13): what a scene says or shows, one row per sentence and per
-- on-screen text, each with its own span and text vector.
--
-- A scene's single vector mixes all its speech and screen text; a query that paraphrases one sentence
-- or names one caption matches that unit better alone. Search ranks units by vector distance, takes
-- each scene's best unit as one more signal in the fused rank, and plays a hit from that unit's start
-- (a sentence that began before the shot's cut). Rows go with their scene (ON DELETE CASCADE) and
-- carry the same row-level security as scenes: the organisation's own rows only, the MAC-verified
-- organisation of 006, the owner's maintenance policy.
CREATE TABLE scene_units (
  org_id      text NOT NULL,
  asset_id    text NOT NULL,
  idx         integer NOT NULL,
  unit        integer NOT NULL,
  source      text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('speech', 'screen')),
  start_s     double precision NOT NULL,
  end_s       double precision NOT NULL,
  text        text NOT NULL,
  text_vec    halfvec({text_dim}),
  text_model  text,
  PRIMARY KEY (org_id, asset_id, idx, unit),
  FOREIGN KEY (org_id, asset_id, idx) REFERENCES scenes ON DELETE CASCADE
) WITH (toast_tuple_target = 8160);
ALTER TABLE scene_units ALTER COLUMN text_vec SET STORAGE MAIN;

ALTER TABLE scene_units ENABLE ROW LEVEL SECURITY;
ALTER TABLE scene_units FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON scene_units
  USING (org_id = (SELECT heimdex_current_org()))
  WITH CHECK (org_id = (SELECT heimdex_current_org()));
CREATE POLICY owner_maintenance ON scene_units TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON scene_units TO {app_role};
