"""shots: cuts (PySceneDetect's ContentDetector on downscaled frames) and sharp keyframes, in one decode.

Frames are decoded once with PyAV. Each frame is shrunk for the detector; at `sample_fps` a larger
copy is kept as a JPEG candidate with its sharpness (variance of the Laplacian). Every shot is then
cut into chunks of at most `keyframe_interval_s`, and the sharpest candidate of each chunk becomes a
keyframe: its JPEG is the thumbnail, the OCR input and the vision input.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import av
import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector

from heimdex.domain import MediaError
from heimdex.stages.context import StageContext

log = logging.getLogger(__name__)

MAX_BAD_PACKET_SHARE = 0.5
JPEG_QUALITY = 85


@dataclass
class Candidate:
    time: float
    sharpness: float
    jpeg: bytes


def _scaled(width: int, height: int, target_w: int) -> tuple[int, int]:
    w = min(target_w, width)
    h = max(2, round(height * w / width / 2) * 2)
    return w - w % 2, h


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    turns = (-rotation // 90) % 4  # display matrix rotation is counter-clockwise
    return np.ascontiguousarray(np.rot90(img, k=-turns)) if turns else img


def scan(
    path: str,
    *,
    fps_hint: float | None,
    rotation: int,
    threshold: float,
    detect_width: int,
    sample_fps: float,
    thumb_width: int,
) -> tuple[list[float], list[Candidate], float, int]:
    """One pass over the video: cut times, keyframe candidates, last frame time, decode errors."""
    detector = ContentDetector(threshold=threshold, min_scene_len=12)
    cuts: list[float] = []
    candidates: list[Candidate] = []
    next_sample = 0.0
    last_t = 0.0
    packets = bad = 0
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = fps_hint or 25.0
        det_size = thumb_size = None
        for packet in container.demux(stream):
            packets += 1
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:  # corrupt packet: skip, keep going
                bad += 1
                log.debug("skipping undecodable packet at %s: %s", packet.pts, exc)
                continue
            for frame in frames:
                t = float(frame.time) if frame.time is not None else last_t + 1.0 / fps
                if t < last_t:  # out-of-order timestamps in broken files
                    t = last_t
                last_t = t
                if det_size is None:
                    det_size = _scaled(frame.width, frame.height, detect_width)
                    thumb_size = _scaled(frame.width, frame.height, thumb_width)
                small = detector_image(frame, det_size)
                for cut in detector.process_frame(FrameTimecode(t, fps), small):
                    cuts.append(float(cut.seconds))
                if t >= next_sample:
                    assert thumb_size is not None
                    candidates.append(_candidate(frame, t, thumb_size, rotation))
                    next_sample = t + 1.0 / sample_fps
        cuts.extend(float(c.seconds) for c in detector.post_process(FrameTimecode(last_t, fps)))
    if packets and bad / packets > MAX_BAD_PACKET_SHARE:
        raise MediaError(f"{bad} of {packets} video packets are corrupt")
    if not candidates:
        raise MediaError("no decodable video frames")
    return sorted(set(cuts)), candidates, last_t, bad


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)[:, :width]


def detector_image(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """A small BGR copy of the frame for the detector.

    For 8-bit 4:2:0 (nearly all delivery formats) the planes are shrunk with OpenCV and converted
    there: about 3x cheaper than swscale's full conversion. Other formats go through swscale.
    """
    w, h = size
    if frame.format.name not in ("yuv420p", "yuvj420p") or frame.width % 2 or frame.height % 2:
        return frame.reformat(width=w, height=h, format="bgr24").to_ndarray()
    fw, fh = frame.width, frame.height
    y = cv2.resize(_plane(frame, 0, fw, fh), (w, h), interpolation=cv2.INTER_LINEAR)
    u = cv2.resize(_plane(frame, 1, fw // 2, fh // 2), (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    v = cv2.resize(_plane(frame, 2, fw // 2, fh // 2), (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def _candidate(frame: av.VideoFrame, t: float, size: tuple[int, int], rotation: int) -> Candidate:
    img = _rotate(frame.reformat(width=size[0], height=size[1], format="bgr24").to_ndarray(), rotation)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise MediaError("could not encode a thumbnail")
    return Candidate(t, sharpness, buf.tobytes())


def shots_from_cuts(cuts: list[float], duration: float) -> list[tuple[float, float]]:
    bounds = [0.0] + [c for c in cuts if 0.0 < c < duration] + [duration]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b - a > 1e-3]


def chunks(start: float, end: float, max_len: float) -> list[tuple[float, float]]:
    n = max(1, int(np.ceil((end - start) / max_len - 1e-9)))
    step = (end - start) / n
    return [(start + i * step, start + (i + 1) * step) for i in range(n)]


def pick_keyframes(
    shots: list[tuple[float, float]], candidates: list[Candidate], interval: float
) -> list[tuple[int, float, float, Candidate]]:
    """(shot index, chunk start, chunk end, sharpest candidate) for every chunk of every shot."""
    times = np.array([c.time for c in candidates])
    picked = []
    for shot_index, (start, end) in enumerate(shots):
        for a, b in chunks(start, end, interval):
            inside = [i for i in range(np.searchsorted(times, a), np.searchsorted(times, b))]
            if inside:
                best = max(inside, key=lambda i: candidates[i].sharpness)
            else:
                best = int(np.argmin(np.abs(times - (a + b) / 2)))
            picked.append((shot_index, a, b, candidates[best]))
    return picked


def run(ctx: StageContext) -> dict[str, Any]:
    probe = ctx.read_output("probe")
    s = ctx.settings
    with ctx.sources.local_path(ctx.ref.source) as path:
        cuts, candidates, last_t, bad = scan(
            str(path),
            fps_hint=probe["video"]["fps"],
            rotation=probe["video"]["rotation"],
            threshold=s.shot_threshold,
            detect_width=s.shot_detect_width,
            sample_fps=s.sample_fps,
            thumb_width=s.thumb_width,
        )
    duration = max(float(probe["duration"]), last_t)
    shots = shots_from_cuts(cuts, duration)
    keyframes = []
    for i, (shot_index, a, b, cand) in enumerate(pick_keyframes(shots, candidates, s.keyframe_interval_s)):
        key = ctx.ref.derived_key(f"thumbs/{i:05d}.jpg")
        ctx.derived.write_bytes(key, cand.jpeg, "image/jpeg")
        keyframes.append(
            {
                "index": i,
                "shot": shot_index,
                "start": round(a, 3),
                "end": round(b, 3),
                "time": round(cand.time, 3),
                "sharpness": round(cand.sharpness, 1),
                "thumb": key,
            }
        )
    doc = {
        "duration": round(duration, 3),
        "cuts": [round(c, 3) for c in cuts],
        "shots": [{"start": round(a, 3), "end": round(b, 3)} for a, b in shots],
        "keyframes": keyframes,
        "corrupt_packets": bad,
    }
    ctx.write_output("shots", doc)
    return doc
