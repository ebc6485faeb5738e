-- Heimdex index schema, version 3: half-precision vectors kept in the row; no shared HNSW graph.
--
-- Measured at 1M scenes (BENCHMARKS.md, "Search at scale"):
-- - float vectors (1,544 + 2,056 bytes a row) were always moved to TOAST, so every heap check of a
--   filtered index scan and every exact distance was a TOAST fetch, and the two float HNSW indexes
--   (4.6 GB) did not stay in memory. halfvec halves the vectors; STORAGE MAIN and toast_tuple_target
--   keep them in the row itself (~2.4 KB a row with 384 + 512 dims): an exact distance reads one
--   heap page, no TOAST.
-- - one HNSW graph over every organisation, filtered by row-level security, kept only the caller's
--   share of the tuples it visited: recall 0.66 and p95 0.26-0.86 s for an organisation holding 35%
--   of the rows, 0.84 and 132-193 ms for one holding 1%. Search now takes a small organisation's
--   candidates exactly (heimdex.index.search) and a large one's from a partial HNSW index over its
--   own rows (heimdex.index.orgindex); the shared graphs are dropped.
-- Upgrades in place: the table is rewritten once (vectors rounded to half precision); until
-- orgindex.ensure() has run, every organisation is searched exactly, which is correct, only slower
-- for large ones.
DROP INDEX IF EXISTS scenes_text_hnsw;
DROP INDEX IF EXISTS scenes_image_hnsw;
ALTER TABLE scenes
  ALTER COLUMN text_vec TYPE halfvec({text_dim}) USING text_vec::halfvec({text_dim}),
  ALTER COLUMN image_vec TYPE halfvec({image_dim}) USING image_vec::halfvec({image_dim}),
  ALTER COLUMN text_vec SET STORAGE MAIN,
  ALTER COLUMN image_vec SET STORAGE MAIN,
  SET (toast_tuple_target = 8160);
