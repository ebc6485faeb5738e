"""faces: face tracks of each shot, with dlib (heimdex.media.faces).

Frames are searched at `faces_sample_fps` within each shot plus at each keyframe's time
(faceframes.sample_times). They come from the shots stage, which decodes the video once and hands
over the JPEGs of those frames in one object per segment (heimdex.media.faceframes); only where its
output has none (faces were off when it ran, an older version, or this task ran before and removed
them) is the segment decoded again here with PyAV. Detections of one person within a
shot become one track: its time range, normalised box, quality, embedding (of its best
detection) and the best crop as the face thumbnail. Grouping tracks into people happens in the
index stage, where the organisation's people are (heimdex.vectorstore.people).

Skipped, with the reason, when faces are off (HEIMDEX_FACES=off, or the organisation is in
HEIMDEX_NO_FACES_ORGS) or dlib or its models are missing.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

import av
import cv2
import numpy as np

from heimdex.core.context import StageContext
from heimdex.domain import MediaError, StageSkipped
from heimdex.media import faceframes, faces
from heimdex.models import FaceModels

SIGNATURE_SIZE = (64, 36)
STATIC_MAD = 2.0  # mean absolute difference (0-255) under which two frames show the same picture


def frames_at(
    path: str, times: list[float], width: int, rotation: int, start: float
) -> list[tuple[float, np.ndarray]]:
    """RGB frames at (the first frame at or after) each wanted time, scaled to `width`, decoded from
    the video (when the shots stage handed over none)."""
    out: list[tuple[float, np.ndarray]] = []
    if not times:
        return out
    i = 0
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        if start > 0 and stream.time_base is not None:
            container.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream)
        size: tuple[int, int] | None = None
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                continue  # the shots stage has judged corrupt packets already
            for frame in decoded:
                if frame.time is None:
                    continue
                t = float(frame.time)
                if t + 1e-3 < times[i]:
                    continue
                if size is None:
                    w = min(width, frame.width)
                    size = (w - w % 2, max(2, round(frame.height * w / frame.width / 2) * 2))
                rgb = frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
                turns = (-rotation // 90) % 4
                if turns:
                    rgb = np.rot90(rgb, k=-turns)
                out.append((t, np.ascontiguousarray(rgb)))
                i = bisect.bisect_right(times, t + 1e-3)
                if i >= len(times):
                    return out
    return out


def signature(rgb: np.ndarray) -> np.ndarray:
    """A tiny grey copy of a frame: what `same_picture` compares."""
    return cv2.resize(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), SIGNATURE_SIZE, interpolation=cv2.INTER_AREA
    ).astype(np.float32)


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).mean()) < STATIC_MAD


def track_shot(
    models: FaceModels, frames: list[tuple[float, np.ndarray]], *, min_size: int, max_gap_s: float
) -> tuple[list[faces.Track], int]:
    """The shot's face tracks, and how many frames were searched. A frame that shows the same
    picture as the last one searched (a static shot) takes that frame's detections at its own time
    instead of running the detector again: half of a shot-by-shot news clip is such frames."""
    tracks: list[faces.Track] = []
    searched = 0
    last_sig: np.ndarray | None = None
    last_found: list[faces.Detection] = []
    for t, rgb in frames:
        sig = signature(rgb)
        if last_sig is not None and same_picture(sig, last_sig):
            found = [dataclasses.replace(d, time=t) for d in last_found]
        else:
            found = faces.detect(models, rgb, t, min_size)
            searched += 1
            last_sig, last_found = sig, found
        if found:
            faces.link(tracks, found, max_gap_s)
    return tracks, searched


def keyframes_first(
    models: FaceModels, frames: list[tuple[float, np.ndarray]], kf_times: set[float], min_size: int
) -> list[tuple[float, np.ndarray]]:
    """A shot's frames to search: all of them if one of its keyframes shows a face, else none
    (HEIMDEX_FACES_KEYFRAMES_FIRST). The keyframes' detections are run again by track_shot; a
    face on a keyframe is rare enough next to the frames saved that this costs little."""
    keys = [(t, rgb) for t, rgb in frames if round(t, 3) in kf_times] or frames[:1]
    return frames if any(faces.detect(models, rgb, t, min_size) for t, rgb in keys) else []


def run(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    if not s.faces_for(ctx.ref.org_id):
        why = "HEIMDEX_FACES=off" if s.faces == "off" else "the organisation is set to no faces"
        raise StageSkipped(f"faces are off ({why})")
    models = ctx.models.faces()  # ModelUnavailable (dlib or its models missing): the stage is skipped
    probe = ctx.read_output("probe")
    shots_doc = ctx.read_output("shots")
    shots, keyframes = shots_doc["shots"], shots_doc["keyframes"]
    times = faceframes.sample_times(shots, keyframes, s.faces_sample_fps)
    handed = shots_doc.get("face_frames")
    if handed and ctx.derived.exists(handed["pack"]):
        blob = ctx.derived.read_bytes(handed["pack"])
        frames = [
            (t, faceframes.decode(j, s.faces_detect_width))
            for t, j in faceframes.unpack(blob, handed["frames"])
        ]
    else:
        seg_start = ctx.segment[0] if ctx.segment else 0.0
        with ctx.sources.local_path(ctx.ref.source) as path:
            frames = frames_at(str(path), times, s.faces_detect_width, probe["video"]["rotation"], seg_start)
    if times and not frames:
        raise MediaError("no decodable video frames for face detection")
    starts = [float(sh["start"]) for sh in shots]
    by_shot: dict[int, list[tuple[float, np.ndarray]]] = {}
    for t, rgb in frames:
        by_shot.setdefault(max(0, bisect.bisect_right(starts, t) - 1), []).append((t, rgb))
    prefix = "" if ctx.part is None else f"{ctx.part:03d}-"
    tracks_out: list[dict[str, Any]] = []
    searched = 0
    kf_times = {round(float(kf["time"]), 3) for kf in keyframes}
    for shot_index, shot_frames in sorted(by_shot.items()):
        h, w = shot_frames[0][1].shape[:2]
        if s.faces_keyframes_first:
            shot_frames = keyframes_first(models, shot_frames, kf_times, s.faces_min_size)
        tracks, n = track_shot(
            models, shot_frames, min_size=s.faces_min_size, max_gap_s=2.5 / s.faces_sample_fps
        )
        searched += n
        for track in tracks:
            vec, best = faces.summarise(models, track)
            key = ctx.ref.derived_key(f"thumbs/faces/{prefix}{len(tracks_out):05d}.jpg")
            ctx.derived.write_bytes(key, faces.thumbnail(best), "image/jpeg")
            left, top, right, bottom = best.box
            tracks_out.append(
                {
                    "shot": shot_index,
                    "start": round(track.detections[0].time, 3),
                    "end": round(track.last.time, 3),
                    "time": round(best.time, 3),
                    "box": [round(left / w, 4), round(top / h, 4), round(right / w, 4), round(bottom / h, 4)],
                    "quality": best.quality,
                    "detections": len(track.detections),
                    "thumb": key,
                    "embedding": [round(float(x), 6) for x in vec],
                }
            )
    doc = {"model": models.name, "frames": len(frames), "searched": searched, "tracks": tracks_out}
    ctx.write_output("faces", doc)
    if handed:  # the frames were for this stage alone: they go once its output is written
        ctx.derived.delete_prefix(handed["pack"])
    return doc
