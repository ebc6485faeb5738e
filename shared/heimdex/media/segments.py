"""Time segments of long media: where to cut (in silences), reading a segment's audio, and merging
the parts of segmented stages back into one timeline with exact timestamps.

A boundary is placed at the quietest moment near each multiple of the segment length, so speech is
split between sentences. Speech recognition of a segment still reads PAD_S of audio beyond each
boundary and keeps the words whose midpoint falls inside the segment: a word that straddles a
boundary anyway (music under speech, no pause) is heard whole by both neighbours and kept by exactly
one, so no word is lost or doubled.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import av
import numpy as np

from heimdex.media import languages

log = logging.getLogger(__name__)

RATE = 16000  # Whisper's sample rate
PAD_S = 1.0  # audio read beyond each side of a segment
SEARCH_S = 5.0  # how far from the nominal boundary a silence is looked for
QUIET_WINDOW_S = 0.3  # the stretch whose loudness is compared
MIN_CUT_GAP_S = 0.48  # cuts closer than the detector's minimum scene length are one cut


def nominal_bounds(duration: float, segment_s: float) -> list[float]:
    """Evenly spaced inner boundaries, about `segment_s` apart; none when the media is shorter than
    two segments (splitting would cost more than it saves)."""
    if segment_s <= 0 or duration < 2 * segment_s:
        return []
    n = round(duration / segment_s)
    return [duration * i / n for i in range(1, n)]


def read_audio(path: str, start: float, end: float) -> np.ndarray:
    """Mono float32 samples at 16 kHz for [start, end) of the file's first audio stream (zeros where
    the stream has no samples)."""
    want = max(0, round((end - start) * RATE))
    chunks: list[np.ndarray] = []
    first_t: float | None = None
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        if start > 0 and stream.time_base is not None:
            container.seek(int(start / stream.time_base), stream=stream)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if first_t is None:
                first_t = float(frame.time)
            if frame.time >= end:
                break
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    if first_t is None or not chunks:
        return np.zeros(want, np.float32)
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    offset = round((start - first_t) * RATE)
    if offset < 0:  # the stream starts after `start`
        audio = np.concatenate([np.zeros(-offset, np.float32), audio])
        offset = 0
    out = audio[offset : offset + want]
    return np.pad(out, (0, want - len(out))) if len(out) < want else out


def quietest(audio: np.ndarray, start: float) -> float:
    """The middle of the quietest QUIET_WINDOW_S of `audio` (which begins at `start` seconds)."""
    hop = RATE // 50  # 20 ms
    frames = len(audio) // hop
    if frames == 0:
        return start
    energy = (audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    width = max(1, round(QUIET_WINDOW_S * 50))
    if frames <= width:
        return start + len(audio) / RATE / 2
    loudness = np.convolve(energy, np.ones(width), mode="valid")
    centre = np.arange(len(loudness)) + width / 2
    # Among equally quiet stretches prefer the one nearest the nominal point (the window's middle).
    order = np.lexsort((np.abs(centre - len(energy) / 2), np.round(loudness, 9)))
    return start + float(centre[order[0]]) * hop / RATE


def plan(path: str, duration: float, segment_s: float, *, has_audio: bool) -> list[tuple[float, float]]:
    """The segments of a file: [(start, end), ...] covering [0, duration], cut in silences."""
    bounds = []
    for nominal in nominal_bounds(duration, segment_s):
        cut = nominal
        if has_audio:
            reach = min(SEARCH_S, segment_s / 4)
            try:
                cut = quietest(read_audio(path, nominal - reach, nominal + reach), nominal - reach)
            except (av.FFmpegError, IndexError, ValueError) as exc:
                log.info("no silence search at %.1f s: %s", nominal, exc)
        bounds.append(round(cut, 3))
    edges = [0.0, *bounds, round(duration, 3)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def in_segment(t: float, segment: tuple[float, float], last: bool) -> bool:
    """Whether time t belongs to the segment: [start, end), the last segment open at the end."""
    start, end = segment
    return start <= t and (last or t < end)


# -- merging parts ---------------------------------------------------------------------------------
# A part of an optional stage (asr, ocr, vision) may be `{"skipped": reason}`: its model or tool was
# missing where that part ran. The merges use the parts that ran and always return the full shape,
# so the index stage works with any subset of signals skipped, in all parts or some.


def skip_state(parts: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(status, note) of a stage from its parts: `skipped` with the reason when no part ran; `done`
    with a note naming the skipped segments when only some ran; `done` and None when all ran."""
    reasons = list(dict.fromkeys(p["skipped"] for p in parts if "skipped" in p))
    if not reasons:
        return "done", None
    skipped = sum("skipped" in p for p in parts)
    if skipped == len(parts):
        return "skipped", "; ".join(reasons)
    return "done", f"skipped in {skipped} of {len(parts)} segments: {'; '.join(reasons)}"


def _ran(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in parts if "skipped" not in p]


def merge_asr(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One transcript: `segments` and `words` always present (empty when speech was skipped)."""
    ran = _ran(parts)
    if len(parts) == 1 and ran:
        return parts[0]
    doc: dict[str, Any] = {
        "language": languages.dominant([s for p in ran for s in p.get("segments", [])])
        or next((p.get("language") for p in ran if p.get("language")), None),
        "segments": [s for p in ran for s in p.get("segments", [])],
        "words": [w for p in ran for w in p.get("words", [])],
        "speech_s": round(sum(float(p.get("speech_s", 0.0)) for p in ran), 3),
    }
    if model := next((p["model"] for p in ran if p.get("model")), None):
        doc["model"] = model
    if ran and "multilingual" in ran[0]:
        doc["multilingual"] = ran[0]["multilingual"]
    if any("speech" in p for p in ran):
        doc["speech"] = [u for p in ran for u in p.get("speech", [])]
    notes = sorted({p["note"] for p in ran if p.get("note")})
    if notes:
        doc["note"] = "; ".join(notes)
    return doc


def shots_from_cuts(cuts: list[float], end: float, start: float = 0.0) -> list[tuple[float, float]]:
    """The shots between `start` and `end` that the cuts delimit (none shorter than a millisecond)."""
    bounds = [start] + [c for c in cuts if start < c < end] + [end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b - a > 1e-3]


def merge_shots(parts: list[dict[str, Any]], duration: float) -> tuple[dict[str, Any], list[int]]:
    """One shots document for the whole media, and the offset of each part's keyframe numbers."""
    if len(parts) == 1:
        return parts[0], [0]
    duration = max([duration] + [float(p["duration"]) for p in parts])
    cuts: list[float] = []
    for cut in sorted(c for p in parts for c in p["cuts"]):
        if not cuts or cut - cuts[-1] >= MIN_CUT_GAP_S:
            cuts.append(cut)
    shots = shots_from_cuts(cuts, duration)
    starts = np.array([a for a, _ in shots])
    keyframes: list[dict[str, Any]] = []
    offsets: list[int] = []
    for part in parts:
        offsets.append(len(keyframes))
        for kf in part["keyframes"]:
            middle = (kf["start"] + kf["end"]) / 2
            shot = max(0, int(np.searchsorted(starts, middle, side="right")) - 1)
            keyframes.append({**kf, "index": len(keyframes), "shot": shot})
    doc = {
        "duration": round(duration, 3),
        "cuts": [round(c, 3) for c in cuts],
        "shots": [{"start": round(a, 3), "end": round(b, 3)} for a, b in shots],
        "keyframes": keyframes,
        "corrupt_packets": sum(int(p.get("corrupt_packets", 0)) for p in parts),
    }
    return doc, offsets


def merge_ocr(parts: list[dict[str, Any]], offsets: list[int]) -> dict[str, Any]:
    """Readings of the parts that ran, keyframes renumbered; `keyframes` empty when OCR was skipped."""
    if len(parts) == 1 and "skipped" not in parts[0]:
        return parts[0]
    ran = [(p, offset) for p, offset in zip(parts, offsets, strict=True) if "skipped" not in p]
    return {
        "engine": ran[0][0].get("engine") if ran else None,
        "keyframes": [
            {**r, "keyframe": r["keyframe"] + offset} for part, offset in ran for r in part["keyframes"]
        ],
        "ocr_runs": sum(int(p.get("ocr_runs", 0)) for p, _ in ran),
    } | (
        {  # RapidOCR's parts: tracked texts (absolute times) and what reading them cost
            "texts": [t for part, _ in ran for t in part["texts"]],
            "ocr_cpu_s": round(sum(float(p.get("ocr_cpu_s", 0.0)) for p, _ in ran), 3),
            "media_s": round(sum(float(p.get("media_s", 0.0)) for p, _ in ran), 3),
        }
        if ran and all("texts" in p for p, _ in ran)
        else {}
    )


def merge_vision(parts: list[dict[str, Any]], offsets: list[int], keyframes: int) -> dict[str, Any]:
    """One image vector per keyframe (None for the keyframes of a part that was skipped);
    `vectors` None and no model when vision was skipped everywhere."""
    if len(parts) == 1 and "skipped" not in parts[0]:
        return parts[0]
    ran = [(p, offset) for p, offset in zip(parts, offsets, strict=True) if "skipped" not in p]
    if not ran:
        return {"model": None, "dim": None, "vectors": None}
    vectors: list[list[float] | None] = [None] * keyframes
    for part, offset in ran:
        vectors[offset : offset + len(part["vectors"])] = part["vectors"]
    return {"model": ran[0][0].get("model"), "dim": ran[0][0].get("dim"), "vectors": vectors}
