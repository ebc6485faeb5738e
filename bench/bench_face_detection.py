"""Face detection alone: dlib's HOG over every whole frame against the Haar-proposal path the faces
stage uses (heimdex.media.faces.detect), cost per frame and what each finds.

    BENCH_MINUTES=3 python -m bench.bench_index     # makes the clip once (.bench/bench_3min_faces.mp4)
    python -m bench.bench_face_detection            # BENCH_MINUTES=3 by default here

Frames: one a second of the bench clip at 640 px (a face photograph in a third of its shots), and
the test photographs (tests/face_media.py) as the clips show them: the upper square of each portrait
at four heights on a 640x360 frame, and each photo whole at 640 px. A detection of the whole-frame
search counts as found by the proposal path where a detection of it overlaps it (IoU >= 0.5).
CPU seconds are process time (robust on a loaded machine). The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from heimdex.config import Settings
from heimdex.media import faces
from heimdex.models import Models
from heimdex.stages.faces import frames_at

ROOT = Path(__file__).resolve().parent.parent


def photo_views(folder: Path) -> list[tuple[str, np.ndarray]]:
    from tests import face_media

    views = []
    for name, path in face_media.face_photos(folder).items():
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        top = rgb[: min(h, w)]
        for height in (360, 300, 240, 180):
            s = height / top.shape[0]
            img = cv2.resize(top, (min(640, round(top.shape[1] * s)), height), interpolation=cv2.INTER_AREA)
            canvas = np.zeros((360, 640, 3), np.uint8)
            x = (640 - img.shape[1]) // 2
            canvas[:height, x : x + img.shape[1]] = img
            views.append((f"{name}@{height}", canvas))
        s = 640 / max(h, w)
        views.append(
            (f"{name}@whole", cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
        )
    return views


def main() -> None:
    minutes = float(os.environ.get("BENCH_MINUTES", "3"))
    clip = ROOT / ".bench" / f"bench_{minutes:g}min_faces.mp4"
    if not clip.exists():
        raise SystemExit(f"no {clip}: run BENCH_MINUTES={minutes:g} python -m bench.bench_index first")
    cv2.setNumThreads(1)  # as in the segment workers
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="facedet-")), database_url=None)
    models = Models(settings).faces()
    duration = float(json.loads(clip.with_suffix(".truth.json").read_text())["duration"])
    frames = frames_at(str(clip), [i + 0.5 for i in range(int(duration))], 640, 0, 0.0)
    views = photo_views(Path(tempfile.mkdtemp(prefix="facedet-photos-")))
    min_size = settings.faces_min_size

    def run(exhaustive: bool) -> tuple[float, dict[str, list[faces.Detection]]]:
        found: dict[str, list[faces.Detection]] = {}
        started = time.process_time()
        for t, rgb in frames:
            found[f"clip@{t:g}"] = faces.detect(models, rgb, t, min_size, exhaustive=exhaustive)
        ms = (time.process_time() - started) * 1000 / len(frames)
        for name, rgb in views:
            found[name] = faces.detect(models, rgb, 0.0, min_size, exhaustive=exhaustive)
        return ms, found

    hog_ms, hog = run(True)
    prop_ms, prop = run(False)
    hog_ms2, _ = run(True)  # again, after: the load may have changed meanwhile
    missed = [
        k
        for k, dets in hog.items()
        for d in dets
        if max((faces.iou(d.box, e.box) for e in prop[k]), default=0) < 0.5
    ]
    extra = [
        k
        for k, dets in prop.items()
        for d in dets
        if max((faces.iou(d.box, e.box) for e in hog[k]), default=0) < 0.5
    ]
    figures = {
        "clip_frames": len(frames),
        "photo_views": len(views),
        "hog_ms_per_frame": round((hog_ms + hog_ms2) / 2, 2),
        "proposals_ms_per_frame": round(prop_ms, 2),
        "clip_detections_hog": sum(len(v) for k, v in hog.items() if k.startswith("clip@")),
        "clip_detections_proposals": sum(len(v) for k, v in prop.items() if k.startswith("clip@")),
        "detections_hog": sum(len(v) for v in hog.values()),
        "detections_proposals": sum(len(v) for v in prop.values()),
        "missed": missed,
        "extra": extra,
        "load_average": os.getloadavg(),
    }
    print(
        f"HOG over whole frames {figures['hog_ms_per_frame']} ms/frame, Haar proposals + HOG"
        f" {figures['proposals_ms_per_frame']} ms/frame; missed {missed}, extra {extra}",
        file=sys.stderr,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
