-- Heimdex index schema, version 3: half-precision vectors kept in the row, HNSW rebuilt on them.
--
-- Measured at 1M scenes (BENCHMARKS.md, "Search at scale"): float vectors (1,544 + 2,056 bytes a
-- row) were always moved to TOAST, so every heap check of an iterative index scan and every exact
-- distance was a TOAST fetch, and the two float HNSW indexes (4.6 GB) did not stay in memory.
-- halfvec halves both; STORAGE MAIN and toast_tuple_target keep a row's vectors in the row itself
-- (a row is ~2.4 KB with 384 + 512 dims), so an exact distance reads one heap page.
-- Upgrades in place: the table is rewritten once (the vectors are rounded to half precision) and
-- both HNSW indexes are rebuilt; on a large index this takes minutes (raise maintenance_work_mem).
DROP INDEX IF EXISTS scenes_text_hnsw;
DROP INDEX IF EXISTS scenes_image_hnsw;
ALTER TABLE scenes
  ALTER COLUMN text_vec TYPE halfvec({text_dim}) USING text_vec::halfvec({text_dim}),
  ALTER COLUMN image_vec TYPE halfvec({image_dim}) USING image_vec::halfvec({image_dim}),
  ALTER COLUMN text_vec SET STORAGE MAIN,
  ALTER COLUMN image_vec SET STORAGE MAIN,
  SET (toast_tuple_target = 8160);
-- m and ef_construction are pgvector's defaults, written out: a change is a new migration (rebuild).
CREATE INDEX scenes_text_hnsw ON scenes
  USING hnsw (text_vec halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX scenes_image_hnsw ON scenes
  USING hnsw (image_vec halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
