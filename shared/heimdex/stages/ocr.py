"""ocr: on-screen text of keyframes with Tesseract, only where text can be and has changed.

Text is edges. Each keyframe gets an edge signature (Canny on a small grey copy, dilated): a
keyframe with almost no edges (sky, a plain wall, a smooth gradient) cannot hold readable text and
is not read; a keyframe whose edges match the last one read (a static title card, an interview
with the same lower third) reuses that reading instead of running Tesseract again. The keyframes
left are read by one Tesseract process: starting it and loading its model costs ~100 ms, more than
reading a keyframe (20 bench keyframes: 2.45 s in one call each, 0.36 s in one call, same words).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from heimdex.core.context import StageContext

MIN_CONFIDENCE = 60.0
TESSERACT_TIMEOUT_S = 60  # to start, plus TESSERACT_PAGE_S for each keyframe
TESSERACT_PAGE_S = 10
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


def tesseract_words(jpegs: list[bytes], languages: str, exe: str = "tesseract") -> list[list[str]]:
    """For each image, the words Tesseract reads with at least MIN_CONFIDENCE, in reading order; one
    Tesseract process reads them all (a list of files is its multi-page input)."""
    if not jpegs:
        return []
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    with tempfile.TemporaryDirectory(prefix="heimdex-ocr-") as tmp:
        paths = [Path(tmp) / f"{i:05d}.jpg" for i in range(len(jpegs))]
        for path, jpeg in zip(paths, jpegs, strict=True):
            path.write_bytes(jpeg)
        listing = Path(tmp) / "keyframes.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        proc = subprocess.run(
            [exe, str(listing), "stdout", "-l", languages, "--psm", "11", "tsv"],
            capture_output=True,
            timeout=TESSERACT_TIMEOUT_S + TESSERACT_PAGE_S * len(jpegs),
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"tesseract failed: {proc.stderr.decode(errors='replace')[-300:]}")
    pages: list[list[str]] = [[] for _ in jpegs]
    rows = csv.DictReader(
        io.StringIO(proc.stdout.decode(errors="replace")), delimiter="\t", quoting=csv.QUOTE_NONE
    )
    for row in rows:
        text = (row.get("text") or "").strip()
        try:
            conf, page = float(row.get("conf") or -1), int(row.get("page_num") or 0) - 1
        except ValueError:
            continue
        if conf >= MIN_CONFIDENCE and sum(ch.isalnum() for ch in text) >= 2 and 0 <= page < len(pages):
            pages[page].append(text)
    return pages


def run(ctx: StageContext) -> dict[str, Any]:
    exe = ctx.models.tesseract()  # ModelUnavailable (not installed, no language data): the stage is skipped
    keyframes = ctx.read_output("shots")["keyframes"]
    # Which reading each keyframe takes: None (no text can be there) or an index into `read`.
    read: list[bytes] = []
    reading: list[int | None] = []
    last_sig: np.ndarray | None = None
    for kf in keyframes:
        jpeg = ctx.derived.read_bytes(kf["thumb"])
        sig = edge_signature(jpeg)
        if sig.mean() < MIN_EDGE_SHARE:
            reading.append(None)
            continue
        if last_sig is None or not same_edges(sig, last_sig):
            read.append(jpeg)
            last_sig = sig
        reading.append(len(read) - 1)
    texts = [" ".join(words) for words in tesseract_words(read, ctx.settings.ocr_languages, exe)]
    results = [
        {
            "keyframe": kf["index"],
            "start": kf["start"],
            "end": kf["end"],
            "text": "" if r is None else texts[r],
        }
        for kf, r in zip(keyframes, reading, strict=True)
    ]
    doc = {"engine": "tesseract", "keyframes": results, "ocr_runs": len(read)}
    ctx.write_output("ocr", doc)
    return doc
