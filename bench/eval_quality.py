"""Search quality on news-like footage: recall@1, recall@5 and MRR per kind of query (`make eval`).

A held-out-style set, generated here and kept apart from the tests' fixtures (tests/conftest.py,
tests/corpus.py, heimdex.dev.samples' demo clips) so that nothing is tuned to it: eight clips of
several shots with espeak-ng speech in several voices and speeds over background noise, lower-third
captions, small captions on busy moving backgrounds (testsrc2, noise), title cards on test patterns
(smptebars, testsrc), captions that appear mid-shot; 42 queries, most with a distractor elsewhere
that shares their words. Each query names the clip and the time span (a sentence or a caption) it
is about; a hit is right when it is that clip and its [start, end] overlaps the span. "starts in
time" counts the right hits whose start is at most 0.5 s after the span's start (the link plays
from the first word).

    make eval                         # generate (cached under .eval/), index, query, print
    EVAL_JSON=1 make eval             # the last line is one JSON object with every figure
    EVAL_HOME=/tmp/h make eval        # keep the index there (EVAL_FORCE=1: index again)

The index lives in a temporary home; the clips are cached by the content of their specification.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import wave
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heimdex.config import Settings
from heimdex.dev.samples import ffmpeg, join_parts, speak
from heimdex.embedded.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".eval"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
FONT_REGULAR = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SIZE = (640, 360)
FPS = 25
RATE = 22050
STARTS_IN_TIME_S = 0.5


@dataclass(frozen=True)
class Text:
    """Text drawn over a shot. style: card (large, centre), lower (lower third, small, on a band),
    small (small, no band, on whatever is behind it), top (medium, top left)."""

    text: str
    style: str = "lower"
    span: tuple[float, float] | None = None  # within the shot; default: the whole shot
    color: str = "white"


@dataclass(frozen=True)
class Shot:
    seconds: float
    background: str = "gradients"  # gradients | smptebars | testsrc | testsrc2 | noise
    speech: str | None = None
    speech_at: float = 0.5
    voice: str = "en-us"
    wpm: int = 160
    texts: tuple[Text, ...] = ()
    look: int = 0


@dataclass(frozen=True)
class Clip:
    name: str
    shots: tuple[Shot, ...]
    noise: float = 0.0  # background noise, as a share of full scale (RMS)


@dataclass(frozen=True)
class Query:
    text: str
    kind: str
    clip: str
    shot: int  # which shot holds the target
    target: str = "speech"  # speech | text (the shot's first text, or `text_index`)
    text_index: int = 0


GRADIENTS = [
    ("0x1f3b73", "0x3fa7d6"),
    ("0x7a1f1f", "0xf2a541"),
    ("0x1d5c3a", "0xa8d672"),
    ("0x4b2a66", "0xe07bb5"),
]

CLIPS: list[Clip] = [
    Clip(
        "harbour_night",
        (
            Shot(7.0, "smptebars", texts=(Text("FERRY CROSSINGS CANCELLED", "card", color="yellow"),)),
            Shot(
                11.0,
                speech="A fire broke out in a warehouse by the docks shortly after midnight.",
                texts=(Text("Reporter: Sian Pryce", "small", (3.0, 9.0)),),
                background="testsrc2",
            ),
            Shot(9.0, speech="Crews pumped sea water for three hours before the flames died down.", look=1),
            Shot(
                8.0, speech="Nobody was hurt, the harbour master said this morning.", voice="en-gb", wpm=175
            ),
        ),
        noise=0.02,
    ),
    Clip(
        "harbour_market",
        (
            Shot(8.0, speech="Fish prices at the harbour market rose fourteen percent this week.", look=2),
            Shot(7.0, "testsrc", texts=(Text("MARKET PRICES UP 14%", "card"),)),
            Shot(
                10.0,
                speech="Traders blamed the storm that kept the boats in port for five days.",
                voice="en-gb-scotland",
                wpm=145,
                texts=(Text("Dunmore Marine Traders", "lower", (4.0, 9.5)),),
                look=3,
            ),
            Shot(
                8.0,
                speech="The warehouse by the docks sells ice to the fishing boats.",
                voice="en-us",
                wpm=190,
            ),
        ),
        noise=0.03,
    ),
    Clip(
        "council_budget",
        (
            Shot(7.0, "smptebars", texts=(Text("COUNCIL BUDGET VOTE", "card"),)),
            Shot(
                12.0,
                speech="Councillors approved money for a new swimming pool in the east of the city.",
                voice="en-gb-x-rp",
                texts=(Text("Live: Town Hall", "top", (0.0, 12.0)),),
                look=1,
            ),
            Shot(
                10.0,
                speech="Opposition members said the roads should come first.",
                texts=(Text("Cllr Aled Morgan, Opposition Leader", "lower", (2.5, 8.5)),),
                background="noise",
            ),
            Shot(8.0, speech="The pool should open in the spring of next year.", wpm=200, look=2),
        ),
        noise=0.01,
    ),
    Clip(
        "school_pool",
        (
            Shot(
                9.0, speech="Pupils at the village school learned to swim in the river this summer.", look=3
            ),
            Shot(7.0, "testsrc2", texts=(Text("Swimming lessons for all pupils", "small"),)),
            Shot(9.0, speech="Teachers want a pool closer to the school.", voice="en-029", wpm=150),
        ),
        noise=0.03,
    ),
    Clip(
        "weather_desk",
        (
            Shot(
                10.0,
                speech="Heavy rain will move in from the west tomorrow afternoon.",
                voice="en-gb",
                texts=(Text("WEATHER WARNING: FLOODS", "card", (2.0, 8.0), "yellow"),),
                look=0,
            ),
            Shot(
                9.0,
                speech="Rivers in the valley could burst their banks overnight.",
                texts=(Text("Met Office: amber alert", "small", (1.0, 8.0)),),
                background="noise",
            ),
            Shot(8.0, speech="Drivers are asked to avoid the coast road until Friday.", wpm=185, look=1),
        ),
        noise=0.02,
    ),
    Clip(
        "rail_strike",
        (
            Shot(7.0, "smptebars", texts=(Text("RAIL STRIKE CALLED OFF", "card"),)),
            Shot(
                11.0,
                speech="Train drivers accepted a pay rise of six percent after talks through the night.",
                voice="en-us",
                wpm=170,
                texts=(Text("Union spokesperson Priya Natarajan", "lower", (3.0, 10.0)),),
                look=2,
            ),
            Shot(
                9.0, speech="Trains will run to the normal timetable from Monday.", voice="en-gb-x-rp", look=3
            ),
        ),
        noise=0.025,
    ),
    Clip(
        "lighthouse_history",
        (
            Shot(
                12.0,
                speech="The old lighthouse was built in eighteen fifty to guide ships past the rocks.",
                voice="en-gb-scotland",
                texts=(Text("Archive footage", "top", (6.0, 12.0)),),
                look=1,
            ),
            Shot(8.0, "testsrc", texts=(Text("BUILT 1850", "card", (1.5, 7.0)),)),
            Shot(9.0, speech="Today it is a museum run by local volunteers.", wpm=150, look=0),
        ),
        noise=0.02,
    ),
    Clip(
        "night_bus",
        (
            Shot(
                10.0,
                speech="A night bus service will link the airport with the city centre.",
                voice="en-029",
                texts=(Text("Route N12 from 1 June", "small", (2.0, 9.0)),),
                background="testsrc2",
            ),
            Shot(
                9.0,
                speech="Passengers asked for the late buses after the last train was cut.",
                wpm=190,
                look=2,
            ),
        ),
        noise=0.03,
    ),
]

QUERIES: list[Query] = [
    # spoken words, exact
    Query("fire broke out in a warehouse by the docks", "spoken exact", "harbour_night", 1),
    Query("pumped sea water for three hours", "spoken exact", "harbour_night", 2),
    Query("councillors approved money for a new swimming pool", "spoken exact", "council_budget", 1),
    Query("heavy rain will move in from the west", "spoken exact", "weather_desk", 0),
    Query("today it is a museum run by local volunteers", "spoken exact", "lighthouse_history", 2),
    Query("a night bus service will link the airport", "spoken exact", "night_bus", 0),
    Query("trains will run to the normal timetable", "spoken exact", "rail_strike", 2),
    # spoken, paraphrased
    Query("blaze at a dockside storage building after midnight", "spoken paraphrase", "harbour_night", 1),
    Query("no one was injured", "spoken paraphrase", "harbour_night", 3),
    Query("children taught swimming in a river", "spoken paraphrase", "school_pool", 0),
    Query("motorists should stay off the seaside road", "spoken paraphrase", "weather_desk", 2),
    Query("rail workers agree to a salary increase", "spoken paraphrase", "rail_strike", 1),
    Query("late evening buses requested by travellers", "spoken paraphrase", "night_bus", 1),
    Query("bad weather kept fishing vessels in port", "spoken paraphrase", "harbour_market", 2),
    # on-screen text
    Query("ferry crossings cancelled", "on-screen text", "harbour_night", 0, "text"),
    Query("council budget vote", "on-screen text", "council_budget", 0, "text"),
    Query("rail strike called off", "on-screen text", "rail_strike", 0, "text"),
    Query("weather warning floods", "on-screen text", "weather_desk", 0, "text"),
    Query("built 1850", "on-screen text", "lighthouse_history", 1, "text"),
    # small on-screen text
    Query("Sian Pryce", "small on-screen text", "harbour_night", 1, "text"),
    Query("Dunmore Marine", "small on-screen text", "harbour_market", 2, "text"),
    Query("Aled Morgan opposition leader", "small on-screen text", "council_budget", 2, "text"),
    Query("swimming lessons for all pupils", "small on-screen text", "school_pool", 1, "text"),
    Query("amber alert", "small on-screen text", "weather_desk", 1, "text"),
    Query("Priya Natarajan", "small on-screen text", "rail_strike", 1, "text"),
    Query("route N12", "small on-screen text", "night_bus", 0, "text"),
    Query("live town hall", "small on-screen text", "council_budget", 1, "text"),
    # words shared with a distractor
    Query("warehouse by the docks fire", "shared words", "harbour_night", 1),
    Query("warehouse by the docks sells ice", "shared words", "harbour_market", 3),
    Query("the pool should open next spring", "shared words", "council_budget", 3),
    Query("teachers want a pool near the school", "shared words", "school_pool", 2),
    Query("the harbour master said nobody was hurt", "shared words", "harbour_night", 3),
    Query("buses after the last train was cut", "shared words", "night_bus", 1),
    # numbers
    Query("fish prices up 14%", "numbers", "harbour_market", 0),
    Query("market prices up fourteen percent", "numbers", "harbour_market", 1, "text"),
    Query("pay rise of 6 percent", "numbers", "rail_strike", 1),
    Query("lighthouse built in 1850", "numbers", "lighthouse_history", 0),
    Query("boats in port for 5 days", "numbers", "harbour_market", 2),
    # speech and screen together
    Query("weather warning heavy rain from the west", "mixed speech and screen", "weather_desk", 0),
    Query("rivers could burst their banks amber alert", "mixed speech and screen", "weather_desk", 1),
    Query("opposition leader says roads should come first", "mixed speech and screen", "council_budget", 2),
    Query("Dunmore Marine traders blame the storm", "mixed speech and screen", "harbour_market", 2),
]


# -- rendering -------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\u2019")


def _background(shot: Shot, index: int) -> str:
    w, h = SIZE
    if shot.background == "gradients":
        c0, c1 = GRADIENTS[shot.look % len(GRADIENTS)]
        return f"gradients=s={w}x{h}:r={FPS}:c0={c0}:c1={c1}:speed=0.015:seed={index}"
    if shot.background == "noise":  # a busy, moving picture: coloured noise over a test pattern
        return f"testsrc=s={w}x{h}:r={FPS},noise=alls=60:allf=t+u"
    return f"{shot.background}=s={w}x{h}:r={FPS}"


def _drawtext(t: Text, seconds: float) -> str:
    _w, h = SIZE
    a, b = t.span or (0.0, seconds)
    common = f"expansion=none:text='{_esc(t.text)}':fontcolor={t.color}:enable='between(t,{a},{b})'"
    if t.style == "card":
        return f"drawtext=fontfile={FONT}:{common}:fontsize={h // 12}:x=(w-tw)/2:y=(h-th)/2:box=0"
    if t.style == "lower":
        return (
            f"drawtext=fontfile={FONT_REGULAR}:{common}:fontsize={h // 22}:x=w*0.06:y=h*0.82"
            ":box=1:boxcolor=0x202040@0.7:boxborderw=6"
        )
    if t.style == "small":
        return f"drawtext=fontfile={FONT_REGULAR}:{common}:fontsize={h // 24}:x=w*0.05:y=h*0.86"
    return f"drawtext=fontfile={FONT}:{common}:fontsize={h // 18}:x=w*0.04:y=h*0.05"


def render(clip: Clip, out: Path) -> dict[str, Any]:
    """Render the clip; its truth: per shot its span, its speech span and its texts' spans."""
    shots: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="heimdex-eval-") as tmp:
        work = Path(tmp)
        parts: list[Path] = []
        sound: list[tuple[float, Path]] = []
        t = 0.0
        for i, shot in enumerate(clip.shots):
            frames = round(shot.seconds * FPS)
            length = frames / FPS
            chain = ",".join(
                [_background(shot, i), *(_drawtext(x, length) for x in shot.texts), "format=yuv420p"]
            )
            part = work / f"shot{i:03d}.mp4"
            ffmpeg(
                "-f",
                "lavfi",
                "-i",
                chain,
                "-frames:v",
                str(frames),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
                "-g",
                str(FPS * 4),
                part,
            )
            parts.append(part)
            entry: dict[str, Any] = {"start": round(t, 3), "end": round(t + length, 3), "texts": []}
            if shot.speech:
                wav = work / f"speech{i:03d}.wav"
                seconds = speak(shot.speech, wav, voice=shot.voice, wpm=shot.wpm)
                if shot.speech_at + seconds > length:
                    raise ValueError(f"{clip.name} shot {i}: speech {seconds:.1f}s does not fit {length}s")
                sound.append((t + shot.speech_at, wav))
                entry["speech"] = {
                    "text": shot.speech,
                    "start": round(t + shot.speech_at, 3),
                    "end": round(t + shot.speech_at + seconds, 3),
                }
            for x in shot.texts:
                a, b = x.span or (0.0, length)
                entry["texts"].append(
                    {"text": x.text, "start": round(t + a, 3), "end": round(t + min(b, length), 3)}
                )
            shots.append(entry)
            t += length
        track = work / "track.wav"
        _mix(sound, t, track, clip.noise, seed=int(hashlib.sha256(clip.name.encode()).hexdigest()[:8], 16))
        join_parts(parts, track, out)
    return {"duration": round(t, 3), "shots": shots}


def _mix(sound: list[tuple[float, Path]], seconds: float, out: Path, noise: float, seed: int) -> None:
    buf = np.zeros(round(seconds * RATE), dtype=np.float64)
    for start, wav_path in sound:
        with wave.open(str(wav_path)) as wav:
            if wav.getframerate() != RATE or wav.getnchannels() != 1:
                raise ValueError(f"unexpected speech format in {wav_path}")
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16) / 32768.0
        at = round(start * RATE)
        buf[at : at + len(samples)] += samples[: len(buf) - at]
    if noise:
        rng = np.random.default_rng(seed)
        hum = 0.5 * np.sin(2 * np.pi * 50 * np.arange(len(buf)) / RATE)
        buf += noise * (rng.standard_normal(len(buf)) + hum)
    pcm = (np.clip(buf, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


def build_set(folder: Path) -> dict[str, dict[str, Any]]:
    """Render every clip not cached already (keyed by its specification); clip name -> truth."""
    folder.mkdir(parents=True, exist_ok=True)
    truths: dict[str, dict[str, Any]] = {}
    for clip in CLIPS:
        key = hashlib.sha256(json.dumps(asdict(clip), sort_keys=True).encode()).hexdigest()[:12]
        video, truth_file = folder / f"{clip.name}.mp4", folder / f"{clip.name}.truth.json"
        if truth_file.exists() and video.exists():
            cached = json.loads(truth_file.read_text())
            if cached.get("key") == key:
                truths[clip.name] = cached
                continue
        truth = render(clip, video) | {"key": key}
        truth_file.write_text(json.dumps(truth, indent=1))
        truths[clip.name] = truth
    return truths


# -- scoring ---------------------------------------------------------------------------------------


def target_span(q: Query, truths: dict[str, dict[str, Any]]) -> tuple[float, float]:
    shot = truths[q.clip]["shots"][q.shot]
    item = shot["speech"] if q.target == "speech" else shot["texts"][q.text_index]
    return float(item["start"]), float(item["end"])


@dataclass
class Outcome:
    query: str
    kind: str
    rank: int | None  # 1-based rank of the first right hit in the top 5
    starts_in_time: bool
    top: list[dict[str, Any]] = field(default_factory=list)


def score(hits: list[dict[str, Any]], q: Query, truths: dict[str, dict[str, Any]], folder: Path) -> Outcome:
    start, end = target_span(q, truths)
    source = str(folder / f"{q.clip}.mp4")
    rank = None
    in_time = False
    for i, h in enumerate(hits[:5], 1):
        if h["source"] == source and h["start"] < end and h["end"] > start:
            rank = i
            in_time = h["start"] <= start + STARTS_IN_TIME_S
            break
    top = [{"clip": Path(h["source"]).stem, "start": h["start"], "end": h["end"]} for h in hits[:3]]
    return Outcome(q.text, q.kind, rank, in_time, top)


def summarise(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    kinds: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        kinds[o.kind].append(o)
        kinds["all"].append(o)
    out: dict[str, dict[str, float]] = {}
    for kind, group in kinds.items():
        n = len(group)
        right = [o for o in group if o.rank is not None]
        out[kind] = {
            "queries": n,
            "recall@1": round(sum(o.rank == 1 for o in group) / n, 3),
            "recall@5": round(len(right) / n, 3),
            "mrr": round(sum(1.0 / o.rank for o in right if o.rank) / n, 3),
            "starts_in_time": round(sum(o.starts_in_time for o in right) / max(1, len(right)), 3),
        }
    return out


def main() -> int:
    folder = CACHE / "clips"
    t0 = time.perf_counter()
    truths = build_set(folder)
    t1 = time.perf_counter()
    keep = os.environ.get("EVAL_HOME")  # keep the index there (inspect sidecars, query again)
    home = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="heimdex-eval-home-"))
    try:
        settings = Settings(home=home, jwt_secret="eval-" + "x" * 40, database_url=None)
        engine = Engine(settings)
        try:
            results = engine.index(
                [folder / f"{c.name}.mp4" for c in CLIPS],
                org="default",
                force=bool(os.environ.get("EVAL_FORCE")),
            )
            failed = [r for r in results if getattr(r, "status", "ready") != "ready"]
            if failed:
                print(f"indexing failed: {failed}", file=sys.stderr)
                return 1
            t2 = time.perf_counter()
            outcomes = []
            latencies = []
            for q in QUERIES:
                s = time.perf_counter()
                hits = engine.search(q.text, k=5)
                latencies.append(time.perf_counter() - s)
                outcomes.append(score(hits, q, truths, folder))
        finally:
            engine.close()
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    summary = summarise(outcomes)
    print(f"{'kind':<26} {'n':>3} {'R@1':>6} {'R@5':>6} {'MRR':>6} {'in time':>8}")
    for kind, m in summary.items():
        print(
            f"{kind:<26} {m['queries']:>3} {m['recall@1']:>6.3f} {m['recall@5']:>6.3f} {m['mrr']:>6.3f}"
            f" {m['starts_in_time']:>8.3f}"
        )
    misses = [o for o in outcomes if o.rank != 1]
    for o in misses:
        print(f"  not first: [{o.kind}] {o.query!r} rank={o.rank} top={o.top}")
    minutes = sum(t["duration"] for t in truths.values()) / 60
    print(
        f"clips {len(CLIPS)} ({minutes:.1f} min), render {t1 - t0:.1f} s, index {t2 - t1:.1f} s,"
        f" search median {statistics.median(latencies) * 1000:.0f} ms"
    )
    if os.environ.get("EVAL_JSON"):
        print(json.dumps({"summary": summary, "index_s": round(t2 - t1, 1), "minutes": round(minutes, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
