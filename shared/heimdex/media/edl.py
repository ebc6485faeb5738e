"""Edit lists of search hits: a CMX 3600 EDL (what DaVinci Resolve and Premiere Pro import) and CSV.

Each hit is one cut event: reel `AX` (an auxiliary source, named by the `FROM CLIP NAME` comment that
both editors read), source in/out timecodes at the asset's own frame rate, and record timecodes laid
end to end from 01:00:00:00. Non-integer NTSC rates (23.976, 29.97, 59.94) are written as non-drop
frame timecode on the nominal rate (24, 30, 60) over the real frame count, as editors expect.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

RECORD_START_S = 3600.0
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class Clip:
    name: str  # the clip name an editor shows (the file name)
    source: str
    start: float
    end: float
    fps: float | None
    text: str = ""
    score: float = 0.0
    asset_id: str = ""
    link: str = ""


def clips(
    hits: list[dict[str, Any]],
    frame_rate: Callable[[str], float | None],
    link: Callable[[dict[str, Any]], str],
) -> list[Clip]:
    """Search hits as clips, each at its asset's frame rate (`frame_rate(asset_id)`, asked once per
    asset), named by the file name, with `link(hit)` to open the moment."""
    rates: dict[str, float | None] = {}
    out = []
    for h in hits:
        if h["asset_id"] not in rates:
            rates[h["asset_id"]] = frame_rate(h["asset_id"])
        out.append(
            Clip(
                name=PurePosixPath(h["source"].rstrip("/")).name or h["source"],
                source=h["source"],
                start=h["start"],
                end=h["end"],
                fps=rates[h["asset_id"]],
                text=h["text"],
                score=h["score"],
                asset_id=h["asset_id"],
                link=link(h),
            )
        )
    return out


def nominal(fps: float | None) -> int:
    """The timecode base of a frame rate: 29.97 counts frames as 30 does."""
    return max(1, round(fps or DEFAULT_FPS))


def frames(seconds: float, fps: float | None) -> int:
    return round(max(0.0, seconds) * (fps or DEFAULT_FPS))


def timecode(frame: int, base: int) -> str:
    f = frame % base
    s = frame // base
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}"


def _ascii(text: str, limit: int) -> str:
    return re.sub(r"[^\x20-\x7e]", "_", text)[:limit].strip() or "untitled"


def edl(title: str, clips: list[Clip]) -> str:
    lines = [f"TITLE: {_ascii(title, 70)}", "FCM: NON-DROP FRAME", ""]
    rate = clips[0].fps if clips else DEFAULT_FPS
    rec_base = nominal(rate)
    rec = frames(RECORD_START_S, rec_base)
    for n, clip in enumerate(clips, 1):
        base = nominal(clip.fps)
        src_in = frames(clip.start, clip.fps)
        src_out = max(frames(clip.end, clip.fps), src_in + 1)
        # The record side runs at the list's rate: the event lasts as long in seconds.
        length = max(1, round((src_out - src_in) / (clip.fps or DEFAULT_FPS) * (rate or DEFAULT_FPS)))
        lines.append(
            f"{n:03d}  AX       V     C        {timecode(src_in, base)} {timecode(src_out, base)}"
            f" {timecode(rec, rec_base)} {timecode(rec + length, rec_base)}"
        )
        lines.append(f"* FROM CLIP NAME: {_ascii(clip.name, 120)}")
        lines.append(f"* SOURCE FILE: {_ascii(clip.source, 240)}")
        lines.append("")
        rec += length
    return "\r\n".join(lines) + "\r\n"


CSV_COLUMNS = [
    "rank",
    "score",
    "clip",
    "source",
    "asset_id",
    "start",
    "end",
    "fps",
    "tc_in",
    "tc_out",
    "text",
    "link",
]


def table(clips: list[Clip]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for n, c in enumerate(clips, 1):
        base = nominal(c.fps)
        writer.writerow(
            [
                n,
                f"{c.score:.6f}",
                c.name,
                c.source,
                c.asset_id,
                f"{c.start:.3f}",
                f"{c.end:.3f}",
                c.fps or "",
                timecode(frames(c.start, c.fps), base),
                timecode(frames(c.end, c.fps), base),
                _csv_safe(c.text),
                c.link,
            ]
        )
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
