"""index (fan-in): scenes from all signals, the sidecar, text vectors, and one transaction into pgvector;
then, once, the organisation's own HNSW and keyword indexes when this ingest takes it past the
exact-search size."""

from __future__ import annotations

from typing import Any

import numpy as np

from heimdex import segments, sidecar
from heimdex.adapters.blobs import write_json
from heimdex.index import orgindex, store
from heimdex.index.db import backup_fence
from heimdex.scenes import build_scenes
from heimdex.stages.context import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    assert ctx.db is not None, "the index stage runs where the database is"
    probe = ctx.read_output("probe")
    # Segmented stages wrote one part per time segment: one timeline again, keyframes renumbered.
    shots, offsets = segments.merge_shots(ctx.read_parts("shots"), float(probe["duration"]))
    asr = segments.merge_asr(ctx.read_parts("asr"))
    # ocr and vision outputs are {"skipped": reason} when those stages had nothing to do.
    ocr = segments.merge_ocr(ctx.read_parts("ocr"), offsets)
    vision = segments.merge_vision(ctx.read_parts("vision"))
    ocr_by_keyframe = {r["keyframe"]: r["text"] for r in ocr.get("keyframes", [])}
    vectors = vision.get("vectors")
    scenes = build_scenes(
        shots["shots"],
        asr["words"],
        shots["keyframes"],
        ocr_by_keyframe,
        vectors,
        min_s=s.scene_min_s,
        max_s=s.scene_max_s,
    )

    texts = [sc.text for sc in scenes]
    with_text = [i for i, t in enumerate(texts) if t.strip()]
    text_vecs: list[np.ndarray | None] = [None] * len(scenes)
    if with_text:
        emb = ctx.models.embed_texts([texts[i] for i in with_text])
        for row, i in enumerate(with_text):
            text_vecs[i] = emb[row].astype(np.float32)

    models = {
        "asr": asr.get("model", ctx.models.asr_name),
        "text": ctx.models.text_name,
        "image": vision.get("model"),
        "ocr": ocr.get("engine"),
    }
    stages = {
        name: ({"status": "skipped", "note": doc["skipped"]} if "skipped" in doc else {"status": "done"})
        for name, doc in (("probe", probe), ("shots", shots), ("asr", asr), ("ocr", ocr), ("vision", vision))
    }
    doc = sidecar.build(
        ctx.ref,
        probe=probe,
        shots=shots,
        asr=asr,
        ocr_by_keyframe=ocr_by_keyframe,
        scenes=scenes,
        models=models,
        stages=stages,
    )
    rows = [store.SceneRow(scene, vec) for scene, vec in zip(scenes, text_vecs, strict=True)]
    with ctx.db.org_tx(ctx.ref.org_id) as conn:
        # The sidecar is written inside the transaction that points the asset at it, fenced against
        # `heimdex backup`: a backup holds both or neither (heimdex.backup, "Consistency").
        backup_fence(conn)
        write_json(ctx.derived, ctx.ref.sidecar_key, doc)
        store.replace_scenes(
            conn,
            ctx.ref,
            rows,
            duration=float(shots["duration"]),
            sidecar=ctx.ref.sidecar_key,
            text_model=ctx.models.text_name,
            image_model=vision.get("model"),
        )
    orgindex.after_ingest(ctx.db, ctx.ref.org_id)  # the scenes are committed: it never fails the stage
    return {"scenes": len(scenes), "sidecar": ctx.ref.sidecar_key}
