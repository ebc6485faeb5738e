"""ocr: on-screen text of keyframes with Tesseract, only where text can be and has changed.

Text is edges. Each keyframe gets an edge signature (Canny on a small grey copy, dilated): a
keyframe with almost no edges (sky, a plain wall, a smooth gradient) cannot hold readable text and
is not read; a keyframe whose edges match the last one read (a static title card, an interview
with the same lower third) reuses that reading instead of running Tesseract again.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from typing import Any

import cv2
import numpy as np

from heimdex.domain import StageSkipped
from heimdex.stages.context import StageContext

MIN_CONFIDENCE = 60.0
TESSERACT_TIMEOUT_S = 60
SIGNATURE_WIDTH = 320
MIN_EDGE_SHARE = 0.002  # below this share of edge pixels there is no readable text
SAME_EDGES_IOU = 0.85


def edge_signature(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("keyframe is not a decodable JPEG")
    h = max(1, round(img.shape[0] * SIGNATURE_WIDTH / img.shape[1]))
    small = cv2.resize(img, (SIGNATURE_WIDTH, h), interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(small, 100, 200)
    return cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0


def same_edges(a: np.ndarray, b: np.ndarray) -> bool:
    union = np.logical_or(a, b).sum()
    return bool(union == 0 or np.logical_and(a, b).sum() / union >= SAME_EDGES_IOU)


def tesseract_words(jpeg: bytes, languages: str) -> list[str]:
    """Words Tesseract reads with at least MIN_CONFIDENCE, in reading order."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    proc = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", languages, "--psm", "11", "tsv"],
        input=jpeg,
        capture_output=True,
        timeout=TESSERACT_TIMEOUT_S,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tesseract failed: {proc.stderr.decode(errors='replace')[-300:]}")
    words = []
    rows = csv.DictReader(
        io.StringIO(proc.stdout.decode(errors="replace")), delimiter="\t", quoting=csv.QUOTE_NONE
    )
    for row in rows:
        text = (row.get("text") or "").strip()
        try:
            conf = float(row.get("conf") or -1)
        except ValueError:
            continue
        if conf >= MIN_CONFIDENCE and sum(ch.isalnum() for ch in text) >= 2:
            words.append(text)
    return words


def run(ctx: StageContext) -> dict[str, Any]:
    if shutil.which("tesseract") is None:
        raise StageSkipped("tesseract is not installed; on-screen text is not indexed")
    keyframes = ctx.read_output("shots")["keyframes"]
    results = []
    last_read: tuple[np.ndarray, str] | None = None
    ocr_runs = 0
    for kf in keyframes:
        jpeg = ctx.derived.read_bytes(kf["thumb"])
        sig = edge_signature(jpeg)
        if sig.mean() < MIN_EDGE_SHARE:
            text = ""
        elif last_read is not None and same_edges(sig, last_read[0]):
            text = last_read[1]
        else:
            text = " ".join(tesseract_words(jpeg, ctx.settings.ocr_languages))
            ocr_runs += 1
            last_read = (sig, text)
        results.append({"keyframe": kf["index"], "start": kf["start"], "end": kf["end"], "text": text})
    doc = {"engine": "tesseract", "keyframes": results, "ocr_runs": ocr_runs}
    ctx.write_output("ocr", doc)
    return doc
