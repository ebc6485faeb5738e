"""Subtitles from word timestamps: WebVTT and SubRip.

Cues are made readable the way broadcast style guides ask: at most 2 lines of at most 42 characters,
shown 1-7 seconds, and split at pauses in the speech rather than mid-phrase. A word that would make
a cue too long (in text or time) starts the next cue; a pause of PAUSE_S or more starts the next cue
once the current one has been up for MIN_S.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LINE_CHARS = 42
MAX_LINES = 2
MIN_S = 1.0
MAX_S = 7.0
PAUSE_S = 0.5


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def _lines(words: list[str]) -> list[str]:
    return textwrap.wrap(" ".join(words), LINE_CHARS, break_on_hyphens=False)


def cues(words: Iterable[Mapping[str, Any]]) -> list[Cue]:
    """Cues from words `{"s": start, "e": end, "w": text}` (the sidecar's transcript.words)."""
    items = sorted(
        ((float(w["s"]), float(w["e"]), str(w["w"]).strip()) for w in words if str(w.get("w", "")).strip()),
        key=lambda x: x[0],
    )
    groups: list[list[tuple[float, float, str]]] = []
    for item in items:
        current = groups[-1] if groups else None
        if current is not None:
            start, last_end = current[0][0], current[-1][1]
            pause = item[0] - last_end >= PAUSE_S and last_end - start >= MIN_S
            too_long = item[1] - start > MAX_S
            too_wide = len(_lines([w for _, _, w in current] + [item[2]])) > MAX_LINES
            if not (pause or too_long or too_wide):
                current.append(item)
                continue
        groups.append([item])
    out: list[Cue] = []
    for i, group in enumerate(groups):
        start = group[0][0]
        end = max(group[-1][1], start + MIN_S)  # held at least MIN_S ...
        if i + 1 < len(groups):
            end = min(end, groups[i + 1][0][0])  # ... unless the next cue starts sooner
        end = min(max(end, start + 0.001), start + MAX_S)
        out.append(Cue(round(start, 3), round(end, 3), tuple(_lines([w for _, _, w in group])[:MAX_LINES])))
    return out


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _vtt_text(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(items: list[Cue], language: str | None = None) -> str:
    """A WebVTT file; with `language` (a BCP 47 tag), a `Language:` header."""
    head = ["WEBVTT"]
    if language:
        head.append(f"Language: {language}")
    body = [
        f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n" + "\n".join(_vtt_text(x) for x in c.lines)
        for c in items
    ]
    return "\n".join(head) + "\n\n" + "".join(b + "\n\n" for b in body)


def srt(items: list[Cue]) -> str:
    return "".join(
        f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n"
        + "\n".join(x.replace("-->", "->") for x in c.lines)
        + "\n\n"
        for i, c in enumerate(items, 1)
    )
