-- The signals an asset was indexed without (its model or tool was missing), and why:
-- {"asr": "no CTranslate2 Whisper model at base", ...}; empty when every signal ran.
ALTER TABLE assets ADD COLUMN skipped jsonb NOT NULL DEFAULT '{}';
