"""shots: cuts (PySceneDetect's ContentDetector on downscaled frames) and sharp keyframes, in one decode.

Frames are decoded once with PyAV. Each frame is shrunk for the detector; at `sample_fps` a larger
copy is kept as a JPEG candidate with its sharpness (variance of the Laplacian). Every shot is then
cut into chunks of at most `keyframe_interval_s`, and the sharpest candidate of each chunk becomes a
keyframe: its JPEG is the thumbnail, the OCR input and the vision input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector

from heimdex.core.context import StageContext
from heimdex.domain import MediaError
from heimdex.media import faceframes, textframes
from heimdex.media.segments import shots_from_cuts

log = logging.getLogger(__name__)

MAX_BAD_PACKET_SHARE = 0.5
MIN_SCENE_FRAMES = 12  # the detector's shortest shot
JPEG_QUALITY = 92  # 85 blurred the gaps between the words of small captions for OCR


@dataclass
class Candidate:
    time: float
    sharpness: float
    jpeg: bytes
    edges: np.ndarray  # textframes.edge_map: where on-screen text may have changed


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
    start: float = 0.0,
    end: float | None = None,
    decode_threads: int = 0,
) -> tuple[list[float], list[Candidate], float, int]:
    """One pass over [start, end) of the video: cut times, keyframe candidates, last frame time,
    decode errors. A segment after the first starts decoding MIN_SCENE_FRAMES earlier, so that the
    detector has seen the frame before `start` and can find a cut exactly at it.

    decode_threads 0 lets FFmpeg thread the decoder by frames as well as slices (the lowest latency
    when cores are free); 1 decodes in this thread, which costs less CPU time in all (the 5-minute
    bench clip: 1.61 instead of 2.77 s; frame threading's hand-offs): what a process-per-core segment
    worker wants."""
    detector = ContentDetector(threshold=threshold, min_scene_len=MIN_SCENE_FRAMES)
    cuts: list[float] = []
    candidates: list[Candidate] = []
    next_sample = start
    last_t = 0.0
    counts = [0, 0]  # packets, undecodable packets
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        if decode_threads != 1:
            stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decode_threads
        fps = fps_hint or 25.0
        warm_from = max(0.0, start - (MIN_SCENE_FRAMES + 2) / fps)
        if warm_from > 0 and stream.time_base is not None:
            container.seek(int(warm_from / stream.time_base), stream=stream)
        det_size = thumb_size = None
        for frame in _frames(container, stream, counts):
            t = float(frame.time) if frame.time is not None else last_t + 1.0 / fps
            if t < last_t:  # out-of-order timestamps in broken files
                t = last_t
            if end is not None and t >= end:
                break
            last_t = t
            if t < warm_from:
                continue
            if det_size is None:
                det_size = _scaled(frame.width, frame.height, detect_width)
                thumb_size = _scaled(frame.width, frame.height, thumb_width)
            small = detector_image(frame, det_size)
            for cut in detector.process_frame(FrameTimecode(t, fps), small):
                if cut.seconds >= start:
                    cuts.append(float(cut.seconds))
            if t >= next_sample:
                assert thumb_size is not None
                candidates.append(_candidate(frame, t, thumb_size, rotation))
                next_sample = t + 1.0 / sample_fps
        cuts.extend(float(c.seconds) for c in detector.post_process(FrameTimecode(last_t, fps)))
    packets, bad = counts
    if packets and bad / packets > MAX_BAD_PACKET_SHARE:
        raise MediaError(f"{bad} of {packets} video packets are corrupt")
    if not candidates:
        raise MediaError("no decodable video frames")
    return sorted(c for c in set(cuts) if c >= start), candidates, last_t, bad


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, counts: list[int]
) -> Iterator[av.VideoFrame]:
    """Decoded frames; corrupt packets are counted in counts[1] and skipped."""
    for packet in container.demux(stream):
        counts[0] += 1
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            counts[1] += 1
            log.debug("skipping undecodable packet at %s: %s", packet.pts, exc)
            continue
        yield from frames


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)[:, :width]


def _planar_420(frame: av.VideoFrame) -> bool:
    return frame.format.name in ("yuv420p", "yuvj420p") and not frame.width % 2 and not frame.height % 2


def _bgr_and_gray(
    frame: av.VideoFrame, size: tuple[int, int], interpolation: int
) -> tuple[np.ndarray, np.ndarray]:
    """The frame at `size` as BGR, and its luma.

    For 8-bit 4:2:0 (nearly all delivery formats) the planes are resized with OpenCV and converted
    there: 2-4x cheaper than swscale's conversion. Other formats go through swscale.
    """
    w, h = size
    if not _planar_420(frame):
        bgr = frame.reformat(width=w, height=h, format="bgr24").to_ndarray()
        return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    fw, fh = frame.width, frame.height

    def plane(index: int, pw: int, ph: int, tw: int, th: int) -> np.ndarray:
        src = _plane(frame, index, pw, ph)
        return src if (pw, ph) == (tw, th) else cv2.resize(src, (tw, th), interpolation=interpolation)

    y = plane(0, fw, fh, w, h)
    u = plane(1, fw // 2, fh // 2, w // 2, h // 2)
    v = plane(2, fw // 2, fh // 2, w // 2, h // 2)
    i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), y


def detector_image(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """A small BGR copy of the frame for the detector. Nearest-neighbour sampling: the detector
    compares mean hue, saturation and luma between frames, which sampling does not move, at a
    quarter of the cost of interpolating (the largest cost of this stage after decoding)."""
    return _bgr_and_gray(frame, size, cv2.INTER_NEAREST)[0]


def _candidate(frame: av.VideoFrame, t: float, size: tuple[int, int], rotation: int) -> Candidate:
    bgr, gray = _bgr_and_gray(frame, size, cv2.INTER_AREA)
    img = _rotate(bgr, rotation)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise MediaError("could not encode a thumbnail")
    return Candidate(t, sharpness, buf.tobytes(), textframes.edge_map(gray))


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


def hand_over_face_frames(
    ctx: StageContext,
    shots: list[tuple[float, float]],
    keyframes: list[dict[str, Any]],
    candidates: list[Candidate],
    prefix: str,
) -> dict[str, Any] | None:
    """The candidates' JPEGs the faces stage searches, in one derived object (heimdex.media.faceframes):
    it then decodes nothing. None when faces are off for the organisation."""
    s = ctx.settings
    if not s.faces_for(ctx.ref.org_id):
        return None
    wanted = faceframes.sample_times(
        [{"start": a, "end": b} for a, b in shots], keyframes, s.faces_sample_fps
    )
    picked = faceframes.pick([c.time for c in candidates], wanted)
    blob, index = faceframes.pack([(candidates[i].time, candidates[i].jpeg) for i in picked])
    key = ctx.ref.derived_key(f"faceframes/{prefix}frames.jpgs")
    ctx.derived.write_bytes(key, blob, "application/octet-stream")
    return {"pack": key, "frames": index}


def run(ctx: StageContext) -> dict[str, Any]:
    probe = ctx.read_output("probe")
    s = ctx.settings
    start, end = ctx.segment or (0.0, None)
    last = ctx.last_segment
    with ctx.sources.local_path(ctx.ref.source) as path:
        cuts, candidates, last_t, bad = scan(
            str(path),
            fps_hint=probe["video"]["fps"],
            rotation=probe["video"]["rotation"],
            threshold=s.shot_threshold,
            detect_width=s.shot_detect_width,
            sample_fps=s.sample_fps,
            thumb_width=s.thumb_width,
            decode_threads=s.decode_threads,
            start=start,
            end=None if last else end,
        )
    # Up to where this task's pictures reach: the segment's end, or the media's for the last one.
    duration = max(float(probe["duration"]), last_t) if last else float(end or last_t)
    shots = shots_from_cuts(cuts, duration, start)
    prefix = "" if ctx.part is None else f"{ctx.part:03d}-"
    keyframes = []
    for i, (shot_index, a, b, cand) in enumerate(pick_keyframes(shots, candidates, s.keyframe_interval_s)):
        key = ctx.ref.derived_key(f"thumbs/{prefix}{i:05d}.jpg")
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
    # Frames to read for on-screen text: where the text regions change within a shot (OCR reads them).
    text_frames = []
    for n, tf in enumerate(
        textframes.select([c.time for c in candidates], [c.edges for c in candidates], shots)
    ):
        entry: dict[str, Any] = {
            "time": round(tf.time, 3),
            "shot": tf.shot,
            "image": None,
            "bands": None if tf.bands is None else [[round(a, 4), round(b, 4)] for a, b in tf.bands],
        }
        if tf.read:
            entry["image"] = ctx.ref.derived_key(f"textframes/{prefix}{n:05d}.jpg")
            ctx.derived.write_bytes(entry["image"], candidates[tf.index].jpeg, "image/jpeg")
        text_frames.append(entry)
    handed = hand_over_face_frames(ctx, shots, keyframes, candidates, prefix)
    doc = {
        "duration": round(duration, 3),
        "cuts": [round(c, 3) for c in cuts],
        "shots": [{"start": round(a, 3), "end": round(b, 3)} for a, b in shots],
        "keyframes": keyframes,
        "text_frames": text_frames,
        "sample_interval": round(1.0 / s.sample_fps, 3),
        "corrupt_packets": bad,
    } | ({"face_frames": handed} if handed else {})
    ctx.write_output("shots", doc)
    return doc
