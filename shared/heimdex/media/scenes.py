"""Scenes, the unit of search: shots, with long shots split at pauses in speech.

A shot longer than `max_s` is split into windows of `min_s`..`max_s` seconds, cutting at the widest
gap between words in that range so that a sentence stays whole where possible. Words belong to the
scene that holds their midpoint; on-screen text and image vectors come from the keyframes that
overlap the scene.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Scene:
    start: float
    end: float
    words: list[dict[str, Any]] = field(default_factory=list)
    ocr: list[str] = field(default_factory=list)
    keyframes: list[int] = field(default_factory=list)
    thumb: str | None = None
    image_vec: list[float] | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)  # on-screen texts with start and end
    lang: str | None = None  # the language most of its words were spoken in (media.languages)

    @property
    def transcript(self) -> str:
        return " ".join(w["w"] for w in self.words)

    @property
    def ocr_text(self) -> str:
        return " ".join(self.ocr)

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.transcript, self.ocr_text) if t)


def split_points(
    start: float, end: float, words: list[dict[str, Any]], min_s: float, max_s: float
) -> list[float]:
    """Interior cut times for one shot: in the widest silence (before, between or after words) that
    lies in the allowed range, at its middle as far as the range allows."""
    cuts: list[float] = []
    cur = start
    spans = [(start, start), *((w["s"], w["e"]) for w in words), (end, end)]
    while end - cur > max_s:
        lo, hi = cur + min_s, min(cur + max_s, end - min_s)
        best, best_gap = None, 0.0
        for (_, quiet_from), (quiet_to, _) in itertools.pairwise(spans):
            a, b = max(quiet_from, lo), min(quiet_to, hi)
            if a <= b and quiet_to - quiet_from >= best_gap:
                best = min(max((quiet_from + quiet_to) / 2, a), b)
                best_gap = quiet_to - quiet_from
        if best is None:
            # No pause in range: cut at the limit, moved off any word that straddles it.
            best = hi
            for w in words:
                if w["s"] < best < w["e"]:
                    best = w["s"] if w["s"] > lo else min(w["e"], end)
                    break
        if best >= end - 1e-3:
            break
        cuts.append(best)
        cur = best
    return cuts


def merge_readings(readings: list[str]) -> list[str]:
    """Distinct on-screen texts: a reading contained in a longer one (a caption read twice, once
    cut short) is dropped; order of first appearance is kept."""
    distinct = list(dict.fromkeys(r.strip() for r in readings if r.strip()))
    return [r for r in distinct if not any(r != o and r.lower() in o.lower() for o in distinct)]


def build_scenes(
    shots: list[dict[str, float]],
    words: list[dict[str, Any]],
    keyframes: list[dict[str, Any]],
    ocr_by_keyframe: dict[int, str],
    vectors: list[list[float] | None] | None,
    *,
    min_s: float,
    max_s: float,
    texts: list[dict[str, Any]] | None = None,
) -> list[Scene]:
    """Scenes from shots; with `texts` (tracked on-screen texts, each with its own start and end) a
    scene's on-screen text is the texts on screen during it, else its keyframes' readings."""
    scenes: list[Scene] = []
    for shot in shots:
        inside = [w for w in words if shot["start"] <= (w["s"] + w["e"]) / 2 < shot["end"]]
        bounds = [shot["start"], *split_points(shot["start"], shot["end"], inside, min_s, max_s), shot["end"]]
        scenes.extend(Scene(a, b) for a, b in itertools.pairwise(bounds))
    if not scenes:
        return scenes
    starts = np.array([s.start for s in scenes])
    for w in words:
        i = max(0, int(np.searchsorted(starts, (w["s"] + w["e"]) / 2, side="right")) - 1)
        scenes[i].words.append(w)
    for scene in scenes:
        overlapping = [
            (min(scene.end, kf["end"]) - max(scene.start, kf["start"]), kf)
            for kf in keyframes
            if kf["start"] < scene.end and kf["end"] > scene.start
        ]
        if not overlapping:
            continue
        overlapping.sort(key=lambda pair: (-pair[0], -pair[1]["sharpness"]))
        scene.keyframes = sorted(kf["index"] for _, kf in overlapping)
        scene.thumb = overlapping[0][1]["thumb"]
        if texts is None:
            scene.ocr = merge_readings([ocr_by_keyframe.get(idx, "") for idx in scene.keyframes])
        # Keyframes of a segment whose vision was skipped have no vector: the others speak for the scene.
        present = [v for i in scene.keyframes if vectors and (v := vectors[i]) is not None]
        if present:
            mean = np.mean(present, axis=0)
            norm = float(np.linalg.norm(mean))
            scene.image_vec = (mean / norm).tolist() if norm > 0 else None
    if texts is not None:
        for scene in scenes:
            # Texts without a letter (a running clock, a frame counter) stay in the sidecar only.
            scene.texts = [
                t
                for t in texts
                if t["start"] < scene.end and t["end"] > scene.start and any(c.isalpha() for c in t["text"])
            ]
            scene.ocr = merge_readings([t["text"] for t in scene.texts])
    return scenes


@dataclass(frozen=True)
class Unit:
    """What a scene says or shows, one sentence or one on-screen text, with its own time span: the
    unit of matching (its own text vector) and of the moment a hit plays from."""

    kind: str  # speech | screen
    start: float
    end: float
    text: str


SENTENCE_END = (".", "?", "!")


def sentences(words: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Words grouped into sentences (ending at . ? !, or at a pause of over a second)."""
    out: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    for w in words:
        if cur and w["s"] - cur[-1]["e"] > 1.0:
            out.append(cur)
            cur = []
        cur.append(w)
        if w["w"].rstrip("\"')").endswith(SENTENCE_END):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def scene_units(scenes: list[Scene], words: list[dict[str, Any]]) -> list[list[Unit]]:
    """For each scene, its units: every sentence with a word in it (whole, though it may run into a
    neighbouring scene) and every on-screen text shown during it."""
    owner = {id(w): i for i, sc in enumerate(scenes) for w in sc.words}
    units: list[list[Unit]] = [[] for _ in scenes]
    for sent in sentences(words):
        text = " ".join(w["w"] for w in sent).strip()
        for i in sorted({owner[id(w)] for w in sent if id(w) in owner}):
            units[i].append(Unit("speech", float(sent[0]["s"]), float(sent[-1]["e"]), text))
    for i, sc in enumerate(scenes):
        units[i].extend(Unit("screen", float(t["start"]), float(t["end"]), t["text"]) for t in sc.texts)
    return units
