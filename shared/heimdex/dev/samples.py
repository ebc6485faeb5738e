"""Synthetic clips with known speech, on-screen text and cuts (espeak-ng + ffmpeg).

Used by `make demo`, the tests and the benchmark. Each clip is a list of segments; every segment
is one shot (a distinct moving gradient, so cuts are real cuts), may speak a sentence and may show
a caption. `make_clip` returns the ground truth: when each sentence is spoken, when each caption is
on screen, and where the cuts are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
PALETTE = [
    ("0x1f3b73", "0x3fa7d6"),
    ("0x7a1f1f", "0xf2a541"),
    ("0x1d5c3a", "0xa8d672"),
    ("0x4b2a66", "0xe07bb5"),
    ("0x3d3d3d", "0xd9d9d9"),
    ("0x0f5257", "0xf25f5c"),
    ("0x5c4b1d", "0x70c1b3"),
    ("0x102a43", "0xffe066"),
]


@dataclass(frozen=True)
class Segment:
    seconds: float
    speech: str | None = None
    speech_at: float = 0.6
    caption: str | None = None
    caption_span: tuple[float, float] | None = None  # within the segment; default: the whole segment
    look: int | None = None  # palette entry; default: the segment's position
    voice: str = "en-us"  # espeak-ng voice of the speech: de, es, fr, ...
    picture: str | None = None  # an image (a face photograph) shown in the middle, 3/4 of the height


def require_tools() -> None:
    missing = [t for t in ("ffmpeg", "espeak-ng") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"missing tools for sample clips: {', '.join(missing)} (apt-get install ffmpeg espeak-ng)"
        )


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; raise on failure."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *map(str, args)], check=True, timeout=600
    )


def speak(text: str, out: Path, voice: str = "en-us", wpm: int = 160) -> float:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True, capture_output=True
    )
    with wave.open(str(out)) as wav:
        return wav.getnframes() / wav.getframerate()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\u2019").replace("%", "\\%")


def _video_segment(
    seg: Segment, index: int, frames: int, work: Path, size: tuple[int, int], fps: int
) -> Path:
    c0, c1 = PALETTE[(seg.look if seg.look is not None else index) % len(PALETTE)]
    w, h = size
    chain = f"gradients=s={w}x{h}:r={fps}:c0={c0}:c1={c1}:speed=0.015:seed={index},format=yuv420p"
    if seg.caption:
        a, b = seg.caption_span or (0.0, seg.seconds)
        chain += (
            f",drawtext=fontfile={FONT}:text='{_escape(seg.caption)}':fontsize={h // 14}:fontcolor=white"
            f":box=1:boxcolor=black@0.55:boxborderw=12:x=(w-tw)/2:y=h*0.62:enable='between(t,{a},{b})'"
        )
    out = work / f"seg{index:04d}.mp4"
    x264 = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(fps * 4))
    if seg.picture:
        # The picture over the background, captions over the picture.
        bg, _, text = chain.partition(",format=yuv420p")
        graph = f"{bg}[bg];movie='{_escape(seg.picture)}',scale=-2:{h * 3 // 4}[pic];"
        graph += f"[bg][pic]overlay=(W-w)/2:(H-h)/2,format=yuv420p{text}"
        ffmpeg("-f", "lavfi", "-i", graph, "-frames:v", str(frames), *x264, out)
        return out
    ffmpeg("-f", "lavfi", "-i", chain, "-frames:v", str(frames), *x264, out)
    return out


def make_clip(
    segments: list[Segment], out: Path, *, size: tuple[int, int] = (640, 360), fps: int = 25
) -> dict[str, Any]:
    """Render the clip to `out` and return its ground truth (also written next to it as .truth.json).

    Video segments are encoded separately and joined without re-encoding; the sound track is laid
    out sample-exactly in one buffer, so the truth's times are the file's times. Segment lengths
    are rounded to whole frames.
    """
    require_tools()
    out.parent.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {"speech": [], "captions": [], "cuts": [], "duration": 0.0}
    with tempfile.TemporaryDirectory(prefix="heimdex-sample-") as tmp:
        work = Path(tmp)
        parts, sound = [], []  # sound: (start seconds, wav path)
        t = 0.0
        for i, seg in enumerate(segments):
            frames = max(1, round(seg.seconds * fps))
            length = frames / fps
            parts.append(_video_segment(seg, i, frames, work, size, fps))
            if i:
                truth["cuts"].append(round(t, 3))
            if seg.speech:
                wav = work / f"speech{i:04d}.wav"
                speech_len = speak(seg.speech, wav, seg.voice)
                if seg.speech_at + speech_len > length:
                    raise ValueError(f"segment {i}: speech ({speech_len:.1f}s) does not fit in {length}s")
                sound.append((t + seg.speech_at, wav))
                truth["speech"].append(
                    {
                        "text": seg.speech,
                        "start": round(t + seg.speech_at, 3),
                        "end": round(t + seg.speech_at + speech_len, 3),
                    }
                )
            if seg.caption:
                a, b = seg.caption_span or (0.0, length)
                truth["captions"].append(
                    {"text": seg.caption, "start": round(t + a, 3), "end": round(t + min(b, length), 3)}
                )
            t += length
        track = work / "track.wav"
        _mix(sound, t, track)
        join_parts(parts, track, out)
    truth["duration"] = round(t, 3)
    truth["segments"] = [asdict(s) for s in segments]
    out.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def join_parts(parts: list[Path], track: Path, out: Path) -> None:
    """Join encoded video parts without re-encoding and lay the sound track under them (AAC)."""
    listing = track.with_name("parts.txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    ffmpeg(
        "-f", "concat", "-safe", "0", "-i", listing, "-i", track, "-map", "0:v", "-map", "1:a",
        "-c:v", "copy", "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", out,
    )  # fmt: skip


def _mix(sound: list[tuple[float, Path]], seconds: float, out: Path, rate: int = 22050) -> None:
    """One mono 16-bit track of `seconds`, silent except for each wav placed at its start time."""
    buf = np.zeros(round(seconds * rate), dtype=np.int16)
    for start, wav_path in sound:
        with wave.open(str(wav_path)) as wav:
            if wav.getframerate() != rate or wav.getnchannels() != 1:
                raise ValueError(f"unexpected speech format in {wav_path}")
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        at = round(start * rate)
        buf[at : at + len(samples)] = samples[: len(buf) - at]
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(buf.tobytes())


DEMO_CLIPS: dict[str, list[Segment]] = {
    "harbour_interview.mp4": [
        Segment(6.0, caption="HARBOUR STORIES", speech="Welcome back to the evening news from the coast."),
        Segment(9.0, speech="She told us the harbour fire started just after midnight near the fish market."),
        Segment(8.0, caption="Interview: Maria Lopez, fire chief"),
        Segment(9.0, speech="Firefighters used sea water pumps to save the old lighthouse."),
        Segment(7.0, caption="RECORDED 14 MARCH"),
    ],
    "kitchen_tutorial.mp4": [
        Segment(
            7.0, caption="SOURDOUGH BASICS", speech="Today we are baking bread with a sourdough starter."
        ),
        Segment(9.0, speech="Fold the dough every thirty minutes and let it rest overnight in the fridge."),
        Segment(7.0, caption="Oven at 250 degrees"),
        Segment(8.0, speech="Bake it in a cast iron pot until the crust turns deep brown."),
    ],
    "city_council.mp4": [
        Segment(
            8.0, caption="CITY COUNCIL MEETING", speech="The council voted to build a new bicycle bridge."
        ),
        Segment(9.0, speech="Construction will begin in the spring and cost four million dollars."),
        Segment(6.0, caption="Budget vote passed"),
        Segment(8.0, speech="Residents asked for more street lights along the river path."),
    ],
}


def make_samples(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, segments in DEMO_CLIPS.items():
        path = out_dir / name
        if not path.exists():
            make_clip(segments, path)
        made.append(path)
    return made
