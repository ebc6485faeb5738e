"""ocr: on-screen text, read by PP-OCRv4 through RapidOCR (the default) or by Tesseract.

RapidOCR (`ocr_engine = "rapidocr"`) reads the shot stage's text frames: the frames at which the text
regions of a shot change (heimdex.media.textframes), so a caption that appears mid-shot is read
when it appears, not only if a keyframe happens to hold it. Its lines are tracked from frame to
frame (heimdex.media.texttrack): each caption becomes one text with its own start and end, its
run-together words split (heimdex.media.textnorm). Each keyframe's text, as before, is the texts on
screen during its chunk. The document reports the frames read and the seconds spent reading them.

Tesseract (`ocr_engine = "tesseract"`) reads keyframes:

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
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from heimdex.core.context import StageContext
from heimdex.media import textnorm, texttrack

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


def _line(item: list[Any], width: int, height: int) -> texttrack.Line:
    pts = np.asarray(item[0], dtype=np.float64)
    box = (
        float(pts[:, 0].min() / width),
        float(pts[:, 1].min() / height),
        float(pts[:, 0].max() / width),
        float(pts[:, 1].max() / height),
    )
    return texttrack.Line(textnorm.split_run_together(str(item[1]).strip()), box, float(item[2]))


def rapidocr_lines(
    engine: Any, jpeg: bytes, min_score: float, bands: list[tuple[float, float]] | None = None
) -> list[texttrack.Line]:
    """The lines RapidOCR reads in one frame (only in `bands`, shares of the height, if given) with
    at least `min_score` and at least 2 letters or digits; boxes as shares of the whole frame."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("text frame is not a decodable JPEG")
    height, width = img.shape[:2]
    lines: list[texttrack.Line] = []
    for top, bottom in bands if bands is not None else [(0.0, 1.0)]:
        y0, y1 = int(top * height), max(int(top * height) + 1, round(bottom * height))
        result, _ = engine(img[y0:y1])
        for item in result or []:
            pts = np.asarray(item[0], dtype=np.float64) + np.array([0.0, y0])
            lines.append(_line([pts, item[1], item[2]], width, height))
    kept = [ln for ln in lines if ln.score >= min_score]
    return [ln for ln in texttrack.merge_lines(kept) if sum(ch.isalnum() for ch in ln.text) >= 2]


def texts_by_keyframe(texts: list[dict[str, Any]], keyframes: list[dict[str, Any]]) -> list[str]:
    """For each keyframe, the texts on screen during its chunk, in reading order."""
    out = []
    for kf in keyframes:
        on = [t for t in texts if t["start"] < kf["end"] and t["end"] > kf["start"]]
        on.sort(key=lambda t: (t["box"][1], t["box"][0]))
        out.append(" ".join(dict.fromkeys(t["text"] for t in on)))
    return out


def run_rapidocr(ctx: StageContext) -> dict[str, Any]:
    engine = ctx.models.rapidocr()  # ModelUnavailable (not installed): the stage is skipped
    shots = ctx.read_output("shots")
    keyframes = shots["keyframes"]
    step = float(shots.get("sample_interval", 0.5))
    frames: list[texttrack.Frame] = []
    reads = 0
    cpu = time.process_time()
    for tf in shots.get("text_frames", []):
        lines = None
        bands = [(float(a), float(b)) for a, b in tf["bands"]] if tf.get("bands") else None
        if tf["image"]:
            jpeg = ctx.derived.read_bytes(tf["image"])
            lines = rapidocr_lines(engine, jpeg, ctx.settings.ocr_min_score, bands)
            reads += 1
        frames.append(texttrack.Frame(float(tf["time"]), int(tf["shot"]), lines, bands))
    cpu = time.process_time() - cpu
    shot_ends = {i: float(sh["end"]) for i, sh in enumerate(shots["shots"])}
    texts = texttrack.track(frames, shot_ends, step)
    results = [
        {"keyframe": kf["index"], "start": kf["start"], "end": kf["end"], "text": text}
        for kf, text in zip(keyframes, texts_by_keyframe(texts, keyframes), strict=True)
    ]
    doc = {
        "engine": "rapidocr",
        "texts": texts,
        "keyframes": results,
        "ocr_runs": reads,
        "ocr_cpu_s": round(cpu, 3),
        "media_s": round(float(shots["duration"]) - float(shots["shots"][0]["start"]), 3)
        if shots["shots"]
        else 0.0,
    }
    ctx.write_output("ocr", doc)
    return doc


def run(ctx: StageContext) -> dict[str, Any]:
    if ctx.settings.ocr_engine == "rapidocr":
        return run_rapidocr(ctx)
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
