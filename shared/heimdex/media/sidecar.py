"""The sidecar: one versioned JSON document per asset version, validated against the schema in the repo."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from heimdex.domain import AssetRef
from heimdex.media.scenes import Scene, Unit

SCHEMA_VERSION = 1


@cache
def schema() -> dict[str, Any]:
    text = (resources.files("heimdex") / "schemas" / f"sidecar.v{SCHEMA_VERSION}.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def validate(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, schema())


def build(
    ref: AssetRef,
    *,
    probe: dict[str, Any],
    shots: dict[str, Any],
    asr: dict[str, Any],
    ocr_by_keyframe: dict[int, str],
    scenes: list[Scene],
    models: dict[str, str | None],
    stages: dict[str, dict[str, str]],
    texts: list[dict[str, Any]] | None = None,
    units: list[list[Unit]] | None = None,
) -> dict[str, Any]:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "asset": {
            "org_id": ref.org_id,
            "asset_id": ref.asset_id,
            "source": ref.source,
            "version": ref.version,
        },
        "media": probe,
        "models": models,
        "stages": stages,
        "shots": shots["shots"],
        "keyframes": [
            {k: kf[k] for k in ("index", "shot", "time", "thumb")}
            | {"ocr": ocr_by_keyframe.get(kf["index"], "")}
            for kf in shots["keyframes"]
        ],
        "transcript": {
            k: asr[k]
            for k in ("segments", "words", "speech", "language", "language_note", "note")
            if k in asr
        },
        "scenes": [
            {
                "index": i,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "transcript": s.transcript,
                "ocr": s.ocr_text,
                "keyframes": s.keyframes,
                "thumbnail": s.thumb,
                "lang": s.lang,
            }
            | (
                {
                    "units": [
                        {"kind": u.kind, "start": round(u.start, 3), "end": round(u.end, 3), "text": u.text}
                        for u in units[i]
                    ]
                }
                if units is not None
                else {}
            )
            for i, s in enumerate(scenes)
        ],
    }
    if texts is not None:
        doc["texts"] = texts
    validate(doc)
    return doc
