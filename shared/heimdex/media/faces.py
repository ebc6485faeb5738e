"""Faces in frames with dlib: detection (HOG or CNN), 5-point alignment, 128-d ResNet embedding, and
tracks: the detections of one person within one shot, linked by box overlap between samples.

Only a track's best detection is embedded (the ResNet is the costly part, ~0.1 s a face on one
core): linking samples one second apart by overlap is what a shot's continuity allows, and the best
crop (large, sharp, frontal) gives the most reliable embedding and the thumbnail. (The mean of the
two best was measured to separate the test faces no better: BENCHMARKS.md, people.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from heimdex.media.boxes import iou
from heimdex.models import FaceModels

# Detector scores of real faces in the test clips were 1.1-2.2 (HOG); weaker hits were patterns
# (a false face on colour bars at 0.0-0.3).
MIN_SCORE = 0.5
LINK_IOU = 0.3  # a detection continues a track whose last box it overlaps this much
EMBED_PER_TRACK = 1  # the best detections of a track that are embedded (their mean is the track's)
CHIP_SIZE = 150  # dlib's aligned chip for the embedding network
THUMB_SIZE = 160
THUMB_PADDING = 0.5
# The proposer (HEIMDEX_FACES_PROPOSER=haar): OpenCV's Haar cascade looks for face-like regions on a
# small grey copy of the frame, and dlib's HOG (the detector whose boxes and scores count) runs only on
# a region around each proposal. Measured on the bench clip and the test photos: BENCHMARKS.md (faces).
PROPOSAL_FACE = 24  # the smallest face, in pixels of the grey copy the cascade searches
PROPOSAL_WINDOW = 24  # the cascade's window (haarcascade_frontalface_default: 24x24)
PROPOSAL_STEP = 1.2  # the cascade's scale step
PROPOSAL_NEIGHBOURS = 3  # overlapping hits a proposal needs (low: HOG rejects the false ones)
PROPOSAL_SLACK = 0.75  # proposals down to this fraction of min_size (Haar and HOG boxes differ)
VERIFY_MARGIN = 2.0  # the verified region is this many times the proposal's side
VERIFY_FACE = 160  # a larger proposal is verified on a copy scaled down (in HOG's 5/6 steps) to this


@dataclass
class Detection:
    time: float
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels of the sampled frame
    frame: np.ndarray  # RGB, the sampled frame (kept only while the shot is open)
    shape: Any  # dlib full_object_detection, 5 points
    quality: float


@dataclass
class Track:
    detections: list[Detection] = field(default_factory=list)

    @property
    def last(self) -> Detection:
        return self.detections[-1]

    def best(self, n: int) -> list[Detection]:
        return sorted(self.detections, key=lambda d: d.quality, reverse=True)[:n]


def frontal(shape: Any) -> float:
    """1 for a face looking at the camera, towards 0 in profile: the nose tip's horizontal balance
    between the eyes (dlib's 5 points: 0-1 and 2-3 are the eyes' corners, 4 the nose)."""
    pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
    eye_a, eye_b, nose = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4]
    da, db = np.linalg.norm(nose - eye_a), np.linalg.norm(nose - eye_b)
    return float(1.0 - abs(da - db) / max(float(da + db), 1e-6))


def sharpness(frame: np.ndarray, box: tuple[int, int, int, int]) -> float:
    left, top, right, bottom = box
    crop = frame[max(0, top) : max(0, bottom), max(0, left) : max(0, right)]
    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def quality(frame: np.ndarray, box: tuple[int, int, int, int], shape: Any) -> float:
    """Size, sharpness and frontality in one number in [0, 1]: which crop represents a track."""
    size = min(1.0, (box[2] - box[0]) / 160.0)
    sharp = min(1.0, sharpness(frame, box) / 300.0)
    return round(size * (0.5 + 0.5 * sharp) * frontal(shape), 4)


def hog(detector: Any, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
    """dlib HOG detections (rectangle, score) in an image (RGB or grey)."""
    rects, scores, _ = detector.run(image, upsample, 0.0)
    return list(zip(rects, scores, strict=True))


def proposals(proposer: Any, frame: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    """Where faces may be, as boxes (left, top, right, bottom) in pixels of `frame`: OpenCV's Haar
    frontal-face cascade on a grey copy scaled so that the smallest face looked for (PROPOSAL_SLACK
    times `min_size`: Haar's and HOG's boxes differ) is PROPOSAL_FACE pixels there. Cheap and
    permissive: dlib's HOG confirms each one."""
    h, w = frame.shape[:2]
    smallest = min_size * PROPOSAL_SLACK
    scale = min(1.0, PROPOSAL_FACE / smallest)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    smallest = max(PROPOSAL_WINDOW, int(smallest * scale))
    found = proposer.detectMultiScale(
        grey, scaleFactor=PROPOSAL_STEP, minNeighbors=PROPOSAL_NEIGHBOURS, minSize=(smallest, smallest)
    )
    return [
        (int(x / scale), int(y / scale), int((x + bw) / scale), int((y + bh) / scale))
        for x, y, bw, bh in (found if len(found) else [])
    ]


def verify(
    detector: Any, frame: np.ndarray, box: tuple[int, int, int, int], upsample: int
) -> list[tuple[Any, float]]:
    """dlib's HOG on the region around one proposal (VERIFY_MARGIN times its side), mapped back to
    `frame`'s pixels. The region is searched at the frame's own scale, or for a large face at one of
    the scales HOG's own pyramid would search the whole frame at (steps of 5/6) where the face is at
    most VERIFY_FACE pixels wide: the same boxes and scores as HOG over the whole frame, on a
    fraction of its pixels."""
    import dlib

    h, w = frame.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = side * VERIFY_MARGIN / 2
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    right, bottom = min(w, int(cx + half)), min(h, int(cy + half))
    if right - left < 8 or bottom - top < 8:
        return []
    scale = 1.0
    while side * scale > VERIFY_FACE:
        scale *= 5 / 6
    region = frame[top:bottom, left:right]
    if scale < 1.0:
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    return [
        (
            dlib.rectangle(
                round(left + rect.left() / scale),
                round(top + rect.top() / scale),
                round(left + rect.right() / scale),
                round(top + rect.bottom() / scale),
            ),
            score,
        )
        for rect, score in hog(detector, np.ascontiguousarray(region), upsample)
    ]


def distinct(found: list[tuple[Any, float]]) -> list[tuple[Any, float]]:
    """One detection per face where two proposals' regions confirmed the same one (highest score)."""
    out: list[tuple[Any, float]] = []
    for rect, score in sorted(found, key=lambda f: f[1], reverse=True):
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        if all(iou(box, (o.left(), o.top(), o.right(), o.bottom())) < 0.5 for o, _ in out):
            out.append((rect, score))
    return out


def detect(
    models: FaceModels, frame: np.ndarray, time: float, min_size: int, *, exhaustive: bool = False
) -> list[Detection]:
    """Faces at least `min_size` pixels wide in an RGB frame, with their landmarks. With a proposer
    (HOG only, unless `exhaustive`): dlib's HOG runs only around the cascade's proposals; else over
    the whole frame."""
    import dlib

    h, w = frame.shape[:2]
    upsample = 1 if min_size < 80 else 0  # HOG's window is 80 px
    if models.cnn:
        found = [(item.rect, float(item.confidence)) for item in models.detector(frame, 0)]
    elif models.proposer is not None and not exhaustive:
        found = distinct(
            [
                hit
                for box in proposals(models.proposer, frame, min_size)
                for hit in verify(models.detector, frame, box, upsample)
            ]
        )
    else:
        found = hog(models.detector, frame, upsample)
    out = []
    for rect, score in found:
        if score < MIN_SCORE:
            continue
        box = (max(0, rect.left()), max(0, rect.top()), min(w, rect.right()), min(h, rect.bottom()))
        if box[2] - box[0] < min_size or box[3] - box[1] < min_size:
            continue
        shape = models.landmarks(frame, dlib.rectangle(*box))
        out.append(Detection(time, box, frame, shape, quality(frame, box, shape)))
    return out


def link(tracks: list[Track], detections: list[Detection], max_gap_s: float) -> None:
    """Extend the open tracks with one sample's detections (best overlap first), start new ones."""
    open_tracks = [t for t in tracks if detections and detections[0].time - t.last.time <= max_gap_s]
    pairs = sorted(
        (
            (iou(t.last.box, d.box), ti, di)
            for ti, t in enumerate(open_tracks)
            for di, d in enumerate(detections)
        ),
        reverse=True,
    )
    used_t: set[int] = set()
    used_d: set[int] = set()
    for overlap, ti, di in pairs:
        if overlap < LINK_IOU:
            break
        if ti in used_t or di in used_d:
            continue
        open_tracks[ti].detections.append(detections[di])
        used_t.add(ti)
        used_d.add(di)
    tracks.extend(Track([d]) for di, d in enumerate(detections) if di not in used_d)


def embed(models: FaceModels, det: Detection) -> np.ndarray:
    vec = models.embedding.compute_face_descriptor(det.frame, det.shape, 0)
    return np.asarray(vec, dtype=np.float32)


def thumbnail(det: Detection) -> bytes:
    """The aligned face with some context around it, as JPEG."""
    import dlib

    chip = dlib.get_face_chip(det.frame, det.shape, size=THUMB_SIZE, padding=THUMB_PADDING)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(np.asarray(chip), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
    )
    if not ok:
        raise ValueError("could not encode a face thumbnail")
    return buf.tobytes()


def summarise(models: FaceModels, track: Track) -> tuple[np.ndarray, Detection]:
    """A track's embedding (the mean of its best detections') and its best detection."""
    best = track.best(EMBED_PER_TRACK)
    vecs = np.stack([embed(models, d) for d in best])
    return vecs.mean(axis=0), best[0]


def photo_embeddings(models: FaceModels, rgb: np.ndarray, min_size: int = 40) -> list[np.ndarray]:
    """The embedding of every face in a photo (enrolment), largest face first."""
    h, w = rgb.shape[:2]
    scale = min(1.0, 1280.0 / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    dets = detect(models, np.ascontiguousarray(rgb), 0.0, min_size, exhaustive=True)
    dets.sort(key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), reverse=True)
    return [embed(models, d) for d in dets]
