"""Indexing speed: per stage and end to end (x real time), speech recognition alone, peak memory.

    make bench                      # 5-minute clip, 3 runs
    BENCH_MINUTES=20 BENCH_RUNS=5 make bench

The clip is generated once (speech throughout, a cut every 6-14 s, captions on a third of the shots)
and cached under .bench/. Each run indexes it from scratch into a fresh HEIMDEX_HOME-like store with
`--force`; the first run includes model loading (reported as `cold_*`), the median is over all runs.
Speech recognition alone runs the ASR stage's own transcribe() on the same file with the same
settings. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from heimdex import logs
from heimdex.config import Settings
from heimdex.domain import AssetRef
from heimdex.engine import Engine
from heimdex.models import Models
from heimdex.samples import Segment, make_clip
from heimdex.stages import asr

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"

SENTENCES = [
    "The harbour master checked every boat before the storm arrived.",
    "Our reporter spoke with farmers about the long dry summer.",
    "The new library will open its doors to students next month.",
    "Engineers tested the bridge with heavy trucks on Sunday morning.",
    "The choir practised the final song until late in the evening.",
    "Volunteers cleaned the beach and collected plastic bottles.",
    "The museum found an old map hidden inside a wooden chest.",
    "Doctors at the clinic explained how the vaccine is stored.",
    "The football team celebrated their first win of the season.",
    "A small fire in the kitchen was put out by the neighbours.",
    "Scientists measured the temperature of the glacier every day.",
    "The mayor promised more buses for the northern districts.",
    "Children painted a large mural on the wall of the school.",
    "The train was delayed because of snow on the mountain pass.",
    "Fishermen reported that the catch was better than last year.",
    "The bakery on the corner sells bread made with local flour.",
]
CAPTIONS = [
    "BREAKING NEWS",
    "LIVE FROM THE HARBOUR",
    "WEATHER UPDATE",
    "CITY COUNCIL",
    "SPORTS DESK",
    "ARCHIVE FOOTAGE",
    "INTERVIEW",
    "SPECIAL REPORT",
]


def bench_segments(minutes: float, seed: int = 11) -> list[Segment]:
    rng = random.Random(seed)
    segments: list[Segment] = []
    total = 0.0
    while total < minutes * 60:
        seconds = float(rng.randint(6, 14))
        caption = rng.choice(CAPTIONS) if rng.random() < 0.33 else None
        segments.append(Segment(seconds, speech=rng.choice(SENTENCES), speech_at=0.5, caption=caption))
        total += seconds
    return segments


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    logs.setup("WARNING")
    minutes = float(os.environ.get("BENCH_MINUTES", "5"))
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    CACHE.mkdir(exist_ok=True)
    clip = CACHE / f"bench_{minutes:g}min.mp4"
    if not clip.exists():
        print(f"generating a {minutes:g}-minute clip at {clip} ...", file=sys.stderr)
        make_clip(bench_segments(minutes), clip)
    duration = json.loads(clip.with_suffix(".truth.json").read_text())["duration"]

    home = Path(tempfile.mkdtemp(prefix="heimdex-bench-", dir=CACHE))
    settings = Settings(home=home, database_url=None)
    engine = Engine(settings)
    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    try:
        for run in range(runs):
            started = time.perf_counter()
            (result,) = engine.index([clip], force=True)
            wall = time.perf_counter() - started
            if result.status != "ready":
                raise SystemExit(f"indexing failed: {getattr(result, 'error', result)}")
            walls.append(wall)
            for name, secs in getattr(result, "stages", {}).items():
                stages.setdefault(name, []).append(secs)
            print(f"run {run + 1}/{runs}: {wall:6.1f}s  {duration / wall:5.1f}x real time", file=sys.stderr)
        with engine.db.org_tx(settings.org) as conn:
            row = conn.execute("SELECT count(*) FROM scenes").fetchone()
        scenes = row[0] if row else 0
    finally:
        engine.close()

    # Speech recognition alone: fresh models (load included), same file, same settings.
    asr_walls: list[float] = []
    for _ in range(runs):
        models = Models(settings)
        started = time.perf_counter()
        ctx = engine.context(AssetRef(settings.org, "bench", str(clip), "1"))
        ctx.models = models
        asr.transcribe(ctx, str(clip))
        asr_walls.append(time.perf_counter() - started)
    load_started = time.perf_counter()
    fresh = Models(settings)
    fresh.whisper()
    fresh.text_encoder()
    model_load_s = time.perf_counter() - load_started

    e2e = statistics.median(walls)
    asr_alone = statistics.median(asr_walls)
    print(f"\n{'stage':<10}{'median s':>10}{'x real time':>14}")
    for name, values in stages.items():
        med = statistics.median(values)
        print(f"{name:<10}{med:>10.2f}{duration / med if med else float('inf'):>14.1f}")
    print(f"{'end2end':<10}{e2e:>10.2f}{duration / e2e:>14.1f}")
    print(f"{'asr alone':<10}{asr_alone:>10.2f}{duration / asr_alone:>14.1f}")
    figures = {
        "clip_s": duration,
        "runs": runs,
        "scenes": scenes,
        "x_realtime": round(duration / e2e, 2),
        "cold_x_realtime": round(duration / walls[0], 2),
        "asr_alone_x_realtime": round(duration / asr_alone, 2),
        "e2e_vs_asr_alone": round(asr_alone / e2e, 3),
        "end_to_end_s": round(e2e, 2),
        "asr_alone_s": round(asr_alone, 2),
        "model_load_s": round(model_load_s, 2),
        "stage_median_s": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
