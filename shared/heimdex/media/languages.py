"""Spoken languages on the timeline: speech segments to detect, their detections smoothed, runs of one
language to transcribe, and the language of each scene and asset.

A speech segment is a stretch of voice activity (Silero VAD chunks closer than MERGE_GAP_S joined, at
most one 30-second Whisper window). Whisper's language detection on a few seconds of speech is
often unsure and sometimes confidently wrong for a close neighbour (Spanish heard as Italian). A
segment detected with less than CONFIDENT probability therefore takes its neighbours' evidence into
account: each language's probability is multiplied by the neighbours' summed probability of it
(plus a floor), so a segment keeps a language only its own audio supports when it is sure, and
follows a confident context when it is not.

With an English-only model no language is detected; speech that is not English comes out as
English-sounding words of low confidence. `not_english` flags a transcript where at least a third
of the words lie in segments whose mean word probability is under UNSURE_P (measured on espeak
German, Spanish and French with tiny.en: 0.22-0.53; English: 0.77-0.79).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16000
MERGE_GAP_S = 1.0
MAX_UNIT_S = 30.0
CONFIDENT = 0.9
NEIGHBOUR_FLOOR = 0.01
UNSURE_P = 0.6
UNSURE_SHARE = 1 / 3
MIN_WORDS = 3  # fewer words say nothing either way (a transcript of a foreign clip may keep only a few)


@dataclass
class Unit:
    """One speech segment, in samples of the audio it was found in, and its detected language."""

    start: int
    end: int
    probs: dict[str, float]
    lang: str = ""
    p: float = 0.0


def speech_units(chunks: Sequence[dict[str, int]], *, rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """VAD chunks ({start, end} in samples) joined across gaps under MERGE_GAP_S, up to MAX_UNIT_S."""
    units: list[tuple[int, int]] = []
    for c in chunks:
        near = units and c["start"] - units[-1][1] < MERGE_GAP_S * rate
        if near and c["end"] - units[-1][0] <= MAX_UNIT_S * rate:
            units[-1] = (units[-1][0], c["end"])
        else:
            units.append((c["start"], c["end"]))
    return units


def smooth(units: list[Unit]) -> list[Unit]:
    """Choose each unit's language: its own top detection when confident, else the language that its
    own probabilities and its neighbours' together support best. `p` stays the unit's own probability
    of the chosen language."""
    for i, u in enumerate(units):
        near = [units[j].probs for j in (i - 1, i + 1) if 0 <= j < len(units)]
        top = max(u.probs, key=u.probs.__getitem__)
        if u.probs[top] < CONFIDENT and near:
            support = {
                lang: p * (NEIGHBOUR_FLOOR + sum(n.get(lang, 0.0) for n in near))
                for lang, p in u.probs.items()
            }
            top = max(support, key=support.__getitem__)
        u.lang, u.p = top, round(u.probs[top], 3)
    return units


def runs(units: list[Unit]) -> list[list[Unit]]:
    """Consecutive units of one language: each run is transcribed in one call."""
    return [list(group) for _, group in itertools.groupby(units, key=lambda u: u.lang)]


def word_count(text: str) -> int:
    return len(text.split())


def dominant(segments: Sequence[dict[str, Any]]) -> str | None:
    """The language most words are in (transcript segments carrying `lang`); None without speech."""
    counts: Counter[str] = Counter()
    for seg in segments:
        if seg.get("lang"):
            counts[seg["lang"]] += word_count(seg["text"])
    return counts.most_common(1)[0][0] if counts else None


def scene_languages(
    words_by_scene: Sequence[Sequence[dict[str, Any]]], segments: Sequence[dict[str, Any]]
) -> list[str | None]:
    """Each scene's language: that of most of its words (a word takes its transcript segment's)."""
    starts = [seg["start"] for seg in segments]
    out: list[str | None] = []
    for words in words_by_scene:
        counts: Counter[str] = Counter()
        for w in words:
            mid = (w["s"] + w["e"]) / 2
            i = bisect.bisect_right(starts, mid) - 1
            if i >= 0 and segments[i].get("lang"):
                counts[segments[i]["lang"]] += 1
        out.append(counts.most_common(1)[0][0] if counts else None)
    return out


def not_english(segments: Sequence[dict[str, Any]], words: Sequence[dict[str, Any]]) -> str | None:
    """A note when an English-only model's transcript looks like speech in another language."""
    if len(words) < MIN_WORDS:
        return None
    starts = [seg["start"] for seg in segments]
    by_segment: dict[int, list[float]] = {}
    for w in words:
        i = bisect.bisect_right(starts, (w["s"] + w["e"]) / 2) - 1
        by_segment.setdefault(i, []).append(float(w.get("p", 1.0)))
    unsure = sum(len(ps) for ps in by_segment.values() if sum(ps) / len(ps) < UNSURE_P)
    if unsure < UNSURE_SHARE * len(words):
        return None
    share = round(100 * unsure / len(words))
    return (
        f"speech may not be English ({share}% of words recognised with low confidence by an"
        " English-only model); HEIMDEX_ASR_MODEL=base transcribes other languages"
    )
