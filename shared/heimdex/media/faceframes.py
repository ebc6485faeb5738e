"""The frames the faces stage searches, handed over by the shots stage so the video is decoded once.

The faces stage searches `faces_sample_fps` frames a second within each shot plus every keyframe
(`sample_times`). The shots stage decodes every frame anyway and keeps a JPEG of one every
1/`sample_fps` seconds (its keyframe candidates: rotation applied, `thumb_width` wide, 2 a second by
default); for each wanted time it takes the first candidate at or after it (`pick`) and writes those
JPEGs into one derived object per segment (`pack`), listed in its output as `face_frames`. The faces
stage reads that object back (`unpack`, `decode`) instead of decoding the video again, and deletes it
when its own output is written. Frames are then at most `thumb_width` wide, and no denser than the
candidates.
"""

from __future__ import annotations

import bisect
from typing import Any

import cv2
import numpy as np


def sample_times(shots: list[dict[str, Any]], keyframes: list[dict[str, Any]], fps: float) -> list[float]:
    """Every keyframe's time, and `fps` frames a second within each shot (the first half an interval
    in); a grid time within half an interval of a keyframe that no other grid time took becomes
    that keyframe (the sharpest frame near it), so a shot still gets one frame per interval. Sorted."""
    step = 1.0 / fps
    kf_times = sorted({round(float(kf["time"]), 3) for kf in keyframes})
    times = set(kf_times)
    taken: set[float] = set()
    for shot in shots:
        t = float(shot["start"]) + step / 2
        while t < float(shot["end"]):
            i = bisect.bisect_left(kf_times, t)
            near = [
                k
                for k in (kf_times[j] for j in (i - 1, i) if 0 <= j < len(kf_times))
                if abs(k - t) <= step / 2
            ]
            free = [k for k in near if k not in taken]
            if free:
                taken.add(free[0])
            else:
                times.add(round(t, 3))
            t += step
    return sorted(times)


def pick(candidate_times: list[float], wanted: list[float]) -> list[int]:
    """Indexes of the first candidate at or after each wanted time (both sorted), once each."""
    out: list[int] = []
    for t in wanted:
        i = bisect.bisect_left(candidate_times, t - 1e-3)
        if i < len(candidate_times) and (not out or out[-1] != i):
            out.append(i)
    return out


def pack(frames: list[tuple[float, bytes]]) -> tuple[bytes, list[dict[str, Any]]]:
    """The JPEGs end to end, and where each one is: [{time, offset, length}]."""
    index, offset = [], 0
    for t, jpeg in frames:
        index.append({"time": round(t, 3), "offset": offset, "length": len(jpeg)})
        offset += len(jpeg)
    return b"".join(j for _, j in frames), index


def unpack(blob: bytes, index: list[dict[str, Any]]) -> list[tuple[float, bytes]]:
    return [(float(e["time"]), blob[e["offset"] : e["offset"] + e["length"]]) for e in index]


def decode(jpeg: bytes, width: int) -> np.ndarray:
    """An RGB frame from a packed JPEG, scaled down to `width` if it is wider."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a packed face frame is not a JPEG")
    h, w = bgr.shape[:2]
    if w > width:
        bgr = cv2.resize(bgr, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
