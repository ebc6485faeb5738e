"""index (fan-in): scenes from all signals, the sidecar, text vectors, and one transaction into pgvector;
then, once, the organisation's own HNSW and keyword indexes when this ingest takes it past the
exact-search size.

Speech, on-screen text and image vectors are optional: a stage whose model or tool was missing wrote
`{"skipped": reason}` (in every segment, or some). The asset is indexed with the signals that ran;
the sidecar's `stages` and the asset's `skipped` say which were skipped and why. Scenes always come
from shots; the text vector from whatever text there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from heimdex.core.context import StageContext
from heimdex.core.graph import OPTIONAL
from heimdex.core.storage import write_json
from heimdex.domain import AssetRef
from heimdex.media import languages, segments, sidecar
from heimdex.media.scenes import Scene, Unit, build_scenes, scene_units
from heimdex.vectorstore import orgindex, store
from heimdex.vectorstore import people as people_store
from heimdex.vectorstore.db import backup_fence


@dataclass(frozen=True)
class Assembled:
    duration: float
    scenes: list[Scene]
    units: list[list[Unit]]  # per scene: its sentences and on-screen texts
    sidecar: dict[str, Any]
    skipped: dict[str, str]  # signal -> why it is missing (from all its segments, or some)
    image_model: str | None
    faces: list[dict[str, Any]]  # face tracks of every segment, with the scenes they overlap
    faces_model: str | None
    lang: str | None = None  # the language most words were spoken in
    lang_note: str | None = None  # an English-only model heard speech that may not be English


def assemble(
    ref: AssetRef,
    probe: dict[str, Any],
    parts: dict[str, list[dict[str, Any]]],
    *,
    min_s: float,
    max_s: float,
    asr_name: str,
    text_name: str,
) -> Assembled:
    """Scenes and the sidecar from the stage outputs (`parts`: stage -> its parts in time order)."""
    # Segmented stages wrote one part per time segment: one timeline again, keyframes renumbered.
    shots, offsets = segments.merge_shots(parts["shots"], float(probe["duration"]))
    asr = segments.merge_asr(parts["asr"])
    ocr = segments.merge_ocr(parts["ocr"], offsets)
    vision = segments.merge_vision(parts["vision"], offsets, len(shots["keyframes"]))
    face_parts = [p for p in parts.get("faces", []) if "skipped" not in p]
    ocr_by_keyframe = {r["keyframe"]: r["text"] for r in ocr.get("keyframes", [])}
    scenes = build_scenes(
        shots["shots"],
        asr["words"],
        shots["keyframes"],
        ocr_by_keyframe,
        vision.get("vectors"),
        min_s=min_s,
        max_s=max_s,
        texts=ocr.get("texts"),
    )
    units = scene_units(scenes, asr["words"])
    scene_langs = languages.scene_languages([sc.words for sc in scenes], asr["segments"])
    for scene, lang in zip(scenes, scene_langs, strict=True):
        scene.lang = lang
    if asr.get("multilingual") is False and (note := languages.not_english(asr["segments"], asr["words"])):
        asr = {**asr, "language_note": note}
    states = {name: segments.skip_state(parts[name]) for name in OPTIONAL}
    stages: dict[str, dict[str, str]] = {"probe": {"status": "done"}, "shots": {"status": "done"}}
    for name, (status, note) in states.items():
        stages[name] = {"status": status} | ({"note": note} if note else {})
    models = {
        "asr": asr.get("model") or asr_name,
        "text": text_name,
        "image": vision.get("model"),
        "ocr": ocr.get("engine"),
    }
    doc = sidecar.build(
        ref,
        probe=probe,
        shots=shots,
        asr=asr,
        ocr_by_keyframe=ocr_by_keyframe,
        scenes=scenes,
        models=models,
        stages=stages,
        texts=ocr.get("texts"),
        units=units,
    )
    return Assembled(
        duration=float(shots["duration"]),
        scenes=scenes,
        units=units,
        sidecar=doc,
        skipped={name: note for name, (_, note) in states.items() if note},
        image_model=vision.get("model"),
        faces=scene_faces([t for p in face_parts for t in p["tracks"]], scenes),
        faces_model=face_parts[0].get("model") if face_parts else None,
        lang=asr.get("language") if asr["words"] else None,
        lang_note=asr.get("language_note"),
    )


def scene_faces(tracks: list[dict[str, Any]], scenes: list[Scene]) -> list[dict[str, Any]]:
    """Tracks with the range of scenes they overlap (`scene_lo`, `scene_hi`); a track seen at one
    instant belongs to the scene holding it."""
    out = []
    for t in tracks:
        hit = [
            i
            for i, sc in enumerate(scenes)
            if sc.start <= t["end"]
            and (t["start"] < sc.end or (i == len(scenes) - 1 and t["start"] <= sc.end))
        ]
        if hit:
            out.append({**t, "scene_lo": hit[0], "scene_hi": hit[-1]})
    return out


def store_faces(conn: Any, ctx: StageContext, built: Assembled) -> None:
    """Group the asset's face tracks into the organisation's people and record them per scene in
    the sidecar (the person each track joined at indexing; names live on people). Nothing is
    stored when faces are off for the organisation."""
    org = ctx.ref.org_id
    tracks = built.faces if ctx.settings.faces_for(org) else []
    rows = [
        people_store.FaceRow(
            asset_id=ctx.ref.asset_id,
            start=float(t["start"]),
            end=float(t["end"]),
            scene_lo=int(t["scene_lo"]),
            scene_hi=int(t["scene_hi"]),
            box=[float(x) for x in t["box"]],
            quality=float(t["quality"]),
            embedding=np.asarray(t["embedding"], np.float32),
            model=built.faces_model or "",
            thumbnail=t["thumb"],
        )
        for t in tracks
    ]
    persons = people_store.replace_faces(conn, org, ctx.ref.asset_id, rows, ctx.settings.faces_match_distance)
    for t, person in zip(tracks, persons, strict=True):
        entry = {
            "start": t["start"],
            "end": t["end"],
            "box": t["box"],
            "person": person,
            "thumbnail": t["thumb"],
        }
        for i in range(t["scene_lo"], t["scene_hi"] + 1):
            built.sidecar["scenes"][i].setdefault("faces", []).append(entry)
    built.sidecar["models"]["faces"] = built.faces_model
    sidecar.validate(built.sidecar)


def run(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    assert ctx.db is not None, "the index stage runs where the database is"
    probe = ctx.read_output("probe")
    built = assemble(
        ctx.ref,
        probe,
        {name: ctx.read_parts(name) for name in ("shots", *OPTIONAL)},
        min_s=s.scene_min_s,
        max_s=s.scene_max_s,
        asr_name=ctx.models.asr_name,
        text_name=ctx.models.text_name,
    )
    scenes = built.scenes
    texts = [sc.text for sc in scenes]
    with_text = [i for i, t in enumerate(texts) if t.strip()]
    text_vecs: list[np.ndarray | None] = [None] * len(scenes)
    # One vector per scene, and one per sentence and per on-screen text (their own matches, fused
    # per scene at search time), encoded in one batch.
    unit_vec: dict[str, np.ndarray] = {}
    unit_texts = list(dict.fromkeys(u.text for units in built.units for u in units if u.text.strip()))
    if with_text:
        emb = ctx.models.embed_texts([texts[i] for i in with_text] + unit_texts)
        for row, i in enumerate(with_text):
            text_vecs[i] = emb[row].astype(np.float32)
        unit_vec = {t: emb[len(with_text) + k].astype(np.float32) for k, t in enumerate(unit_texts)}
    rows = [
        store.SceneRow(
            scene,
            vec,
            [store.UnitRow(u, unit_vec[u.text]) for u in units if u.text.strip()],
        )
        for scene, vec, units in zip(scenes, text_vecs, built.units, strict=True)
    ]
    with ctx.db.org_tx(ctx.ref.org_id) as conn:
        # The sidecar is written inside the transaction that points the asset at it, fenced against
        # `heimdex backup`: a backup holds both or neither (heimdex.embedded.backup, "Consistency").
        backup_fence(conn)
        store_faces(conn, ctx, built)
        write_json(ctx.derived, ctx.ref.sidecar_key, built.sidecar)
        store.replace_scenes(
            conn,
            ctx.ref,
            rows,
            duration=built.duration,
            sidecar=ctx.ref.sidecar_key,
            text_model=ctx.models.text_name,
            image_model=built.image_model,
            skipped=built.skipped,
            lang=built.lang,
            lang_note=built.lang_note,
        )
        people_store.tidy(conn, ctx.ref.org_id)  # people left without faces by an older version
    orgindex.after_ingest(ctx.db, ctx.ref.org_id)  # the scenes are committed: it never fails the stage
    return {"scenes": len(scenes), "sidecar": ctx.ref.sidecar_key}
