"""On-screen texts from readings of frames: one caption is one text with its own start and end.

A reading is a line of text with its box and score, read at one of a shot's text frames
(heimdex.media.textframes). Lines are followed from frame to frame within a shot: a line continues
a text still on screen when it says nearly the same thing in about the same place (OCR may read a
letter differently from one frame to the next); the text keeps its best-scored reading. A text ends
at the first text frame where it is no longer read (or where the screen has no text left), else at
the end of its shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from heimdex.media.boxes import iou

SAME_TEXT = 0.6  # similarity of two readings of one text in the same place
SAME_TEXT_ANYWHERE = 0.9  # ... or anywhere on screen (a caption that slides in)
SAME_PLACE_IOU = 0.3
REJOIN_STEPS = 2  # a text missing from this many samples at most is still the same text
MERGE_GAP = 1.5  # heights of the text: boxes closer than this on one row are one line


@dataclass(frozen=True)
class Line:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as shares of the frame's width, height
    score: float


@dataclass(frozen=True)
class Frame:
    time: float
    shot: int
    lines: list[Line] | None  # None: the screen has no text from here on
    bands: list[tuple[float, float]] | None = None  # only these bands were read; None: the whole frame


def _in_bands(box: tuple[float, float, float, float], bands: list[tuple[float, float]] | None) -> bool:
    """Whether a text's box was inside what a frame read (most of its height in one band)."""
    if bands is None:
        return True
    h = max(box[3] - box[1], 1e-6)
    return any((min(box[3], b) - max(box[1], a)) / h > 0.5 for a, b in bands)


@dataclass
class Track:
    start: float
    end: float
    shot: int
    best: Line
    seen: int = 1
    readings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.best.text,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "box": [round(v, 4) for v in self.best.box],
            "score": round(self.best.score, 3),
            "frames": self.seen,
        }


def merge_lines(lines: list[Line]) -> list[Line]:
    """Boxes the detector split on one line of a caption ("Reporter:" | "Sian Pryce") joined, left
    to right: the same row (most of the lower one's height shared) and a gap under MERGE_GAP heights."""
    out: list[Line] = []
    for ln in sorted(lines, key=lambda ln: (ln.box[0], ln.box[1])):
        for k, prev in enumerate(out):
            h = min(prev.box[3] - prev.box[1], ln.box[3] - ln.box[1])
            shared = min(prev.box[3], ln.box[3]) - max(prev.box[1], ln.box[1])
            gap = ln.box[0] - prev.box[2]
            if h > 0 and shared / h >= 0.6 and -0.5 * h <= gap <= MERGE_GAP * h:
                box = (
                    prev.box[0],
                    min(prev.box[1], ln.box[1]),
                    max(prev.box[2], ln.box[2]),
                    max(prev.box[3], ln.box[3]),
                )
                out[k] = Line(f"{prev.text} {ln.text}", box, min(prev.score, ln.score))
                break
        else:
            out.append(ln)
    return out


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, _key(a), _key(b)).ratio()


def _continues(track: Track, line: Line) -> float:
    sim = similarity(track.best.text, line.text)
    if sim >= SAME_TEXT_ANYWHERE or (sim >= SAME_TEXT and iou(track.best.box, line.box) >= SAME_PLACE_IOU):
        return sim
    return 0.0


def track(frames: list[Frame], shot_ends: dict[int, float], step: float) -> list[dict[str, Any]]:
    """Texts with start and end from the frames (in time order). `shot_ends`: shot -> its end;
    `step`: the time between sampled frames (a text that goes was last seen up to a step before)."""
    done: list[Track] = []
    open_: list[Track] = []

    def close(tracks: list[Track], at: float) -> None:
        for tr in tracks:
            tr.end = max(tr.start + step, min(at, shot_ends.get(tr.shot, at)))
            done.append(tr)

    for frame in frames:
        stale = [tr for tr in open_ if tr.shot != frame.shot]
        for tr in stale:
            close([tr], shot_ends.get(tr.shot, frame.time))
        open_ = [tr for tr in open_ if tr.shot == frame.shot]
        if frame.lines is None:
            close(open_, frame.time + step)
            open_ = []
            continue
        unmatched = list(frame.lines)
        still = [tr for tr in open_ if not _in_bands(tr.best.box, frame.bands)]  # not read again
        for tr in [tr for tr in open_ if _in_bands(tr.best.box, frame.bands)]:
            scored = [(_continues(tr, line), j) for j, line in enumerate(unmatched)]
            best = max(scored, default=(0.0, -1))
            if best[0] > 0:
                line = unmatched.pop(best[1])
                tr.seen += 1
                tr.readings.append(line.text)
                if line.score > tr.best.score:
                    tr.best = line
                still.append(tr)
            else:
                close([tr], frame.time)
        open_ = still + [Track(frame.time, frame.time, frame.shot, ln, 1, [ln.text]) for ln in unmatched]
    for tr in open_:
        close([tr], shot_ends.get(tr.shot, tr.start + step))
    done.sort(key=lambda tr: (tr.start, tr.best.box[1], tr.best.box[0]))
    return [tr.as_dict() for tr in _rejoin(done, step)]


def _rejoin(tracks: list[Track], step: float) -> list[Track]:
    """A text missed in one reading (a busy background hid it from the detector for a frame) comes
    back as a second track: the same text in the same shot and place, resuming within REJOIN_STEPS
    samples, continues the first."""
    out: list[Track] = []
    for tr in tracks:
        prev = next(
            (
                p
                for p in reversed(out)
                if p.shot == tr.shot
                and 0 <= tr.start - p.end <= REJOIN_STEPS * step + 1e-6
                and similarity(p.best.text, tr.best.text) >= SAME_TEXT_ANYWHERE
                and iou(p.best.box, tr.best.box) >= SAME_PLACE_IOU
            ),
            None,
        )
        if prev is None:
            out.append(tr)
            continue
        prev.end = max(prev.end, tr.end)
        prev.seen += tr.seen
        if tr.best.score > prev.best.score:
            prev.best = tr.best
    return out
