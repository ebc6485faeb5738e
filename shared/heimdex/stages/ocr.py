"""ocr: on-screen text of keyframes with Tesseract, skipping keyframes that did not change.

Consecutive keyframes whose small grey thumbnails are nearly identical (a static title card, an
interview with a lower third) reuse the previous reading instead of running Tesseract again.
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
SAME_FRAME_MEAN_DIFF = 4.0
TESSERACT_TIMEOUT_S = 60


def signature(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("keyframe is not a decodable JPEG")
    return cv2.resize(img, (64, 36), interpolation=cv2.INTER_AREA).astype(np.int16)


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
    previous: tuple[np.ndarray, str] | None = None
    ocr_runs = 0
    for kf in keyframes:
        jpeg = ctx.derived.read_bytes(kf["thumb"])
        sig = signature(jpeg)
        if previous is not None and float(np.abs(sig - previous[0]).mean()) < SAME_FRAME_MEAN_DIFF:
            text = previous[1]
        else:
            text = " ".join(tesseract_words(jpeg, ctx.settings.ocr_languages))
            ocr_runs += 1
        previous = (sig, text)
        results.append({"keyframe": kf["index"], "start": kf["start"], "end": kf["end"], "text": text})
    doc = {"engine": "tesseract", "keyframes": results, "ocr_runs": ocr_runs}
    ctx.write_output("ocr", doc)
    return doc
