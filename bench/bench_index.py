"""Indexing speed: per stage and end to end (x real time), speech recognition alone, peak memory.

    make bench                      # 20-minute clip, 3 runs
    BENCH_MINUTES=5 BENCH_RUNS=5 make bench
    BENCH_LANG_RUNS=0 make bench    # without the multilingual model's figures

The clip is generated once (speech throughout, a cut every 6-14 s, captions on a third of the shots,
a face photograph in a third of the shots: tests/face_media.py) and cached under .bench/. Each run
indexes it from scratch into a fresh HEIMDEX_HOME-like store with `--force`; the first run includes
model loading (reported as `cold_*`), the median is over all runs.
Speech recognition alone runs the ASR stage's own transcribe() on the same file with the same
settings, then with Whisper base (multilingual): with per-segment language detection, with English
segments routed to tiny.en, and told the language (`asr_multilingual`, BENCH_LANG_RUNS runs each, 1 by
default). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from heimdex import logs
from heimdex.config import Settings
from heimdex.core.context import StageContext
from heimdex.core.graph import parse_task_key
from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.dispatch import JobResult
from heimdex.embedded.engine import Engine
from heimdex.embedded.segment_pool import SegmentPool
from heimdex.models import Models
from heimdex.stages import asr, faces, shots

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


def bench_segments(minutes: float, seed: int = 11, pictures: list[str] | None = None) -> list[Segment]:
    rng = random.Random(seed)
    faces_rng = random.Random(seed + 1)  # its own draws: the other shots stay as they were
    segments: list[Segment] = []
    total = 0.0
    while total < minutes * 60:
        seconds = float(rng.randint(6, 14))
        caption = rng.choice(CAPTIONS) if rng.random() < 0.33 else None
        # Narration as in news and interviews: one sentence in a short shot, two in a long one.
        speech = " ".join(rng.sample(SENTENCES, 2 if seconds >= 10 else 1))
        picture = faces_rng.choice(pictures) if pictures and faces_rng.random() < 1 / 3 else None
        segments.append(Segment(seconds, speech=speech, speech_at=0.5, caption=caption, picture=picture))
        total += seconds
    return segments


def peak_rss_mb() -> float:
    """Peak resident memory of this process and, separately, of its largest child (a segment worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, with reaped children such as Tesseract) of these processes."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def stage_figures(results: list[JobResult], duration: float) -> dict[str, dict[str, float]]:
    """Per stage, medians over runs: busy seconds (all its tasks together) and span (first task
    started to last task finished, in the job's time)."""
    per: dict[str, dict[str, list[float]]] = {}
    for result in results:
        busy: dict[str, float] = {}
        span: dict[str, tuple[float, float]] = {}
        for key, (a, b) in result.spans.items():
            stage = parse_task_key(key)[0]
            busy[stage] = busy.get(stage, 0.0) + (b - a)
            lo, hi = span.get(stage, (a, b))
            span[stage] = (min(lo, a), max(hi, b))
        for stage in busy:
            entry = per.setdefault(stage, {"busy_s": [], "span_s": [], "start_s": [], "end_s": []})
            entry["busy_s"].append(busy[stage])
            entry["span_s"].append(span[stage][1] - span[stage][0])
            entry["start_s"].append(span[stage][0])
            entry["end_s"].append(span[stage][1])
    out = {}
    for stage, values in per.items():
        med = {name: round(statistics.median(v), 2) for name, v in values.items()}
        med["x_realtime"] = round(duration / med["busy_s"], 1) if med["busy_s"] else 0.0
        out[stage] = med
    return out


def asr_whole_file(settings: Settings, ctx: StageContext, clip: Path) -> tuple[float, float]:
    """The speech model alone, the standard way: faster-whisper over the whole file in one process
    with the configured threads (model load included). (wall, CPU) seconds."""
    ctx = replace(ctx, part=None, models=Models(settings))
    started, cpu_before = time.perf_counter(), time.process_time()
    asr.transcribe(ctx, str(clip))
    return time.perf_counter() - started, time.process_time() - cpu_before


# Speech recognition alone with the multilingual model on the same clip (issue 18): per-segment
# language detection, the same with English segments routed to tiny.en, and base told the language
# (no detection): the difference between the last and the first is what detection costs.
MULTILINGUAL = {
    "base_detect": {"asr_model": "base"},
    "base_detect_route_en": {"asr_model": "base", "asr_route_english": True},
    "base_language_given": {"asr_model": "base", "asr_language": "en"},
}


def asr_multilingual(
    settings: Settings, ctx: StageContext, clip: Path, runs: int
) -> dict[str, dict[str, float]]:
    out = {}
    for name, update in MULTILINGUAL.items():
        variant = settings.model_copy(update=update)
        timed = [asr_whole_file(variant, replace(ctx, settings=variant), clip) for _ in range(runs)]
        wall = statistics.median(w for w, _ in timed)
        out[name] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(statistics.median(c for _, c in timed), 1),
            "x_realtime": round(float(truth_duration(clip)) / wall, 2),
        }
    return out


def truth_duration(clip: Path) -> float:
    return float(json.loads(clip.with_suffix(".truth.json").read_text())["duration"])


def asr_segmented(pool: SegmentPool, ctx: StageContext) -> tuple[float, float]:
    """Heimdex's speech recognition alone: every segment through the segment processes, nothing
    else. (wall, CPU) seconds."""
    started, cpu_before = time.perf_counter(), cpu_s(pool.pids())
    with ThreadPoolExecutor(pool.processes) as threads:
        list(threads.map(lambda i: pool.call(replace(ctx, part=i), "asr"), range(len(ctx.segments))))
    return time.perf_counter() - started, cpu_s(pool.pids()) - cpu_before


def faces_alone(ctx: StageContext) -> tuple[float, int, int, int, int]:
    """(CPU seconds, frames searched, tracks, frames sampled, detections in tracks) of the faces
    stage over every segment, in this process
    (its models loaded before the clock starts); zeros with HEIMDEX_FACES=off (the baseline). The
    shots stage runs first, off the clock: it hands the stage its frames (heimdex.media.faceframes),
    which the stage removes once it has used them."""
    if not ctx.settings.faces_for(ctx.ref.org_id):
        return 0.0, 0, 0, 0, 0
    ctx.models.faces()
    cpu, searched, tracks, frames, detections = 0.0, 0, 0, 0, 0
    for i in range(len(ctx.segments)):
        part = replace(ctx, part=i if len(ctx.segments) > 1 else None)
        shots.run(part)
        started = time.process_time()
        doc = faces.run(part)
        cpu += time.process_time() - started
        searched += doc.get("searched", 0)
        tracks += len(doc.get("tracks", []))
        frames += doc.get("frames", 0)
        detections += sum(t["detections"] for t in doc.get("tracks", []))
    return cpu, searched, tracks, frames, detections


def main() -> None:
    logs.setup("WARNING")
    minutes = float(os.environ.get("BENCH_MINUTES", "20"))
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    CACHE.mkdir(exist_ok=True)
    clip = CACHE / f"bench_{minutes:g}min_faces.mp4"
    if not clip.exists():
        print(f"generating a {minutes:g}-minute clip at {clip} (once) ...", file=sys.stderr)
        from tests import face_media

        folder = Path(tempfile.mkdtemp(prefix="faces-", dir=CACHE))
        photos = face_media.face_photos(folder)
        pictures = [
            str(face_media.head_and_shoulders(photos[n], folder / f"hs-{n}"))
            for n in ("obama.jpg", "biden.jpg")
        ]
        make_clip(bench_segments(minutes, pictures=pictures), clip)
    truth = json.loads(clip.with_suffix(".truth.json").read_text())
    duration = truth["duration"]
    speech_share = sum(s["end"] - s["start"] for s in truth["speech"]) / duration

    home = Path(tempfile.mkdtemp(prefix="heimdex-bench-", dir=CACHE))
    settings = Settings(home=home, database_url=None)
    engine = Engine(settings)
    walls: list[float] = []
    cpus: list[float] = []
    results: list[JobResult] = []
    try:
        for run in range(runs):
            started, cpu_before = time.perf_counter(), cpu_s([os.getpid(), *engine.segments.pids()])
            (result,) = engine.index([clip], force=True)
            wall = time.perf_counter() - started
            cpus.append(cpu_s([os.getpid(), *engine.segments.pids()]) - cpu_before)
            if not isinstance(result, JobResult) or result.status != "ready":
                raise SystemExit(f"indexing failed: {getattr(result, 'error', result)}")
            walls.append(wall)
            results.append(result)
            print(f"run {run + 1}/{runs}: {wall:6.1f}s  {duration / wall:5.1f}x real time", file=sys.stderr)
        with engine.db.org_tx(settings.org) as conn:
            row = conn.execute("SELECT count(*) FROM scenes").fetchone()
        scenes = row[0] if row else 0

        # Speech recognition alone on the same file, same settings: the floor set by the slowest model.
        ctx = engine.context(results[-1].ref)
        ocr_parts = [p for p in ctx.read_parts("ocr") if "skipped" not in p]
        segmented = [asr_segmented(engine.segments, ctx) for _ in range(runs)]
        # The faces stage alone, in this process, one segment after another: its CPU seconds.
        faces_cpu = [faces_alone(ctx) for _ in range(runs)]
    finally:
        engine.close()
    whole = [asr_whole_file(settings, ctx, clip) for _ in range(runs)]
    lang_runs = int(os.environ.get("BENCH_LANG_RUNS", "1"))
    multilingual = asr_multilingual(settings, ctx, clip, lang_runs) if lang_runs > 0 else {}

    load_started = time.perf_counter()
    fresh = Models(settings)
    fresh.whisper()
    fresh.text_encoder()
    model_load_s = time.perf_counter() - load_started

    e2e = statistics.median(walls)
    asr_alone = statistics.median(w for w, _ in whole)
    asr_seg = statistics.median(w for w, _ in segmented)
    stages = stage_figures(results, duration)
    print(f"\n{'stage':<10}{'busy s':>9}{'x real time':>13}{'from s':>9}{'to s':>9}", file=sys.stderr)
    for name, fig in stages.items():
        print(
            f"{name:<10}{fig['busy_s']:>9.1f}{fig['x_realtime']:>13.1f}{fig['start_s']:>9.1f}{fig['end_s']:>9.1f}",
            file=sys.stderr,
        )
    print(f"{'end2end':<10}{e2e:>9.1f}{duration / e2e:>13.1f}", file=sys.stderr)
    # OCR's own cost (the last run): CPU seconds spent reading frames per minute of video.
    ocr_cpu = sum(float(p.get("ocr_cpu_s", 0.0)) for p in ocr_parts)
    ocr_reads = sum(int(p.get("ocr_runs", 0)) for p in ocr_parts)
    ocr_per_min = round(ocr_cpu / (duration / 60), 3)
    print(
        f"ocr: {ocr_reads} frames read, {ocr_cpu:.1f} CPU s, {ocr_per_min:.2f} CPU s per minute",
        file=sys.stderr,
    )
    print(
        f"{'asr alone':<10}{asr_alone:>9.1f}{duration / asr_alone:>13.1f}  (whole file, one process)",
        file=sys.stderr,
    )
    print(
        f"{'asr segm.':<10}{asr_seg:>9.1f}{duration / asr_seg:>13.1f}  (segments, process pool)",
        file=sys.stderr,
    )
    for name, fig in multilingual.items():
        print(
            f"{name:<22}{fig['wall_s']:>9.1f}{fig['x_realtime']:>9.1f}x  (asr alone, whole file)",
            file=sys.stderr,
        )
    figures = {
        "clip_s": duration,
        "speech_share": round(speech_share, 3),
        "segments": len(ctx.segments),
        "processes": engine.segments.processes,
        "runs": runs,
        "scenes": scenes,
        "x_realtime": round(duration / e2e, 2),
        "cold_x_realtime": round(duration / walls[0], 2),
        "asr_alone_x_realtime": round(duration / asr_alone, 2),
        "e2e_vs_asr_alone": round(asr_alone / e2e, 3),
        "asr_segmented_x_realtime": round(duration / asr_seg, 2),
        "e2e_vs_asr_segmented": round(asr_seg / e2e, 3),
        "end_to_end_s": round(e2e, 2),
        "asr_alone_s": round(asr_alone, 2),
        "asr_segmented_s": round(asr_seg, 2),
        # CPU seconds (all processes): what contention on a shared machine does not inflate.
        "end_to_end_cpu_s": round(statistics.median(cpus), 1),
        "asr_alone_cpu_s": round(statistics.median(c for _, c in whole), 1),
        "asr_segmented_cpu_s": round(statistics.median(c for _, c in segmented), 1),
        "asr_multilingual": multilingual,
        "model_load_s": round(model_load_s, 2),
        "model_load_share_cold": round(model_load_s / walls[0], 4),
        "stages": stages,
        "ocr_frames_read": ocr_reads,
        "ocr_cpu_s": round(ocr_cpu, 2),
        "ocr_cpu_s_per_min": ocr_per_min,
        # Faces (issue 15): the stage alone (CPU seconds per minute of video, its share of the pipeline's
        # CPU seconds), and in the pipeline (stage-seconds, share of all stages' busy time).
        "faces_cpu_s_per_video_minute": round(
            statistics.median(f[0] for f in faces_cpu) / (duration / 60), 2
        ),
        "faces_cpu_share": round(statistics.median(f[0] for f in faces_cpu) / statistics.median(cpus), 3),
        "faces_frames_searched": faces_cpu[-1][1],
        "faces_tracks": faces_cpu[-1][2],
        # Frames sampled (searched + those that showed the picture last searched: a static shot) and
        # the detections the tracks hold (how many faces the detector found, before/after a change).
        "faces_frames": faces_cpu[-1][3],
        "faces_detections": faces_cpu[-1][4],
        "faces_proposer": settings.faces_proposer,
        "faces_s_per_video_minute": round(stages.get("faces", {}).get("busy_s", 0.0) / (duration / 60), 2),
        "faces_share_of_stage_time": round(
            stages.get("faces", {}).get("busy_s", 0.0) / max(sum(f["busy_s"] for f in stages.values()), 1e-9),
            3,
        ),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "worker_peak_rss_mb": round(children_peak_rss_mb(), 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(json.dumps(figures))
    shutil.rmtree(home, ignore_errors=True)  # the runs' database and derived files (~45 MB)


if __name__ == "__main__":
    main()
