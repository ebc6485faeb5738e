"""Segment-parallel indexing: the graph of parts, boundaries in silence, and merged parts that match
the whole file (no word lost or doubled at a boundary, no cut lost at one)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from heimdex.core.executor import call_here
from heimdex.core.graph import parse_task_key, ready_stages, record_completion
from heimdex.core.storage import read_json, write_json
from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import Engine
from heimdex.media import segments
from heimdex.stages import asr, shots
from tests.test_end_to_end import wer, words

# 30 s; the nominal boundaries for 10-s segments (10 s and 20 s) both fall inside a sentence.
CLIP = [
    Segment(7.0, speech="The harbour master checked every boat before the storm."),
    Segment(7.0, speech="Engineers tested the new bridge with heavy trucks.", speech_at=1.5),
    Segment(5.0, caption="LIVE FROM THE HARBOUR"),
    Segment(11.0, speech="The choir practised the final song until late in the evening.", speech_at=0.5),
]


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> tuple[Path, dict[str, Any]]:
    path = media_dir / "segmented.mp4"
    return path, make_clip(CLIP, path)


def test_short_media_is_one_segment() -> None:
    assert segments.nominal_bounds(119.0, 60.0) == []
    assert segments.nominal_bounds(1200.0, 0.0) == []
    assert segments.nominal_bounds(180.0, 60.0) == [60.0, 120.0]


def test_parts_follow_the_graph_segment_by_segment() -> None:
    states: dict[str, dict[str, Any]] = {"probe": {"status": "running"}}
    nxt = record_completion(states, "probe", status="done", seconds=1.0, note=None, at=0, parts=3)
    assert nxt == ["asr_0", "shots_0", "asr_1", "shots_1", "asr_2", "shots_2"]
    # OCR, vision and faces of a segment need only that segment's shots.
    assert record_completion(states, "shots_1", status="done", seconds=1, note=None, at=0) == [
        "ocr_1",
        "vision_1",
        "faces_1",
    ]
    assert record_completion(states, "shots_1", status="done", seconds=1, note=None, at=0) is None
    for key in ["asr_0", "asr_1", "asr_2", "shots_0", "shots_2", "ocr_0", "ocr_1", "vision_0", "vision_1"]:
        states[key] = {"status": "done"}
    states["ocr_2"] = {"status": "done"}
    assert "index" not in ready_stages(states)  # vision_2 is missing
    states["vision_2"] = {"status": "skipped"}
    assert "index" not in ready_stages(states)  # faces are missing
    for key in ["faces_0", "faces_1", "faces_2"]:
        states[key] = {"status": "done"}
    assert ready_stages(states) == ["index"]


@pytest.mark.parametrize("key", ["probe_1", "asr_x", "index_0", "asr_-1", "nope", "asr_"])
def test_task_keys_are_validated(key: str) -> None:
    with pytest.raises(KeyError):
        parse_task_key(key)


def test_overlapping_windows_keep_each_word_once() -> None:
    """Both neighbours hear the 1 s around a boundary; the midpoint decides who keeps a word."""
    boundary = 10.0
    heard_by_first = [(8.9, 9.4), (9.5, 9.9), (9.8, 10.3), (10.4, 10.9)]  # window [0, 11)
    heard_by_second = [(9.5, 9.9), (9.8, 10.3), (10.4, 10.9), (11.0, 11.5)]  # window [9, 20)

    def as_words(spans: list[tuple[float, float]]) -> list[dict[str, Any]]:
        return [{"w": f"w{s}", "s": s, "e": e, "p": 1.0} for s, e in spans]

    kept = []
    for spans, segment, last in (
        (heard_by_first, (0.0, boundary), False),
        (heard_by_second, (boundary, 20.0), True),
    ):
        ws = as_words(spans)
        segs = [{"start": ws[0]["s"], "end": ws[-1]["e"], "text": " ".join(w["w"] for w in ws)}]
        kept_segments, kept_words = asr.within(segs, ws, *segment, last=last)
        assert [s["text"] for s in kept_segments] == [" ".join(w["w"] for w in kept_words)]
        kept.extend((w["s"], w["e"]) for w in kept_words)
    assert kept == [(8.9, 9.4), (9.5, 9.9), (9.8, 10.3), (10.4, 10.9), (11.0, 11.5)]


def test_boundaries_fall_in_silence(clip: tuple[Path, dict[str, Any]]) -> None:
    path, truth = clip
    plan = segments.plan(str(path), truth["duration"], 10.0, has_audio=True)
    assert len(plan) == 3 and plan[0][0] == 0.0 and plan[-1][1] == pytest.approx(truth["duration"])
    for nominal, (_, end), (start, _) in zip([10.0, 20.0], plan, plan[1:], strict=False):
        assert end == start
        # The nominal point is mid-sentence; the boundary moved to a pause (espeak-ng's recordings
        # end in ~0.3 s of silence, which the truth counts as speech).
        inside = [s for s in truth["speech"] if s["start"] + 0.4 < end < s["end"] - 0.4]
        assert not inside, f"boundary {end} cuts {inside}"
        assert abs(end - nominal) > 0.5


def _ctx_with_segments(engine: Engine, path: Path, org: str, plan: list[list[float]]) -> Any:
    ctx = engine.context(engine.asset_ref(path, org))
    call_here(ctx, "probe")
    probe = read_json(ctx.derived, ctx.output_key("probe"))
    write_json(ctx.derived, ctx.output_key("probe"), {**probe, "segments": plan})
    return replace(ctx)  # a fresh context: the segment plan is read again


def test_a_word_on_a_boundary_is_kept_once(engine: Engine, clip: tuple[Path, dict[str, Any]]) -> None:
    """Cut in the middle of a sentence on purpose: every word of it comes back exactly once."""
    path, truth = clip
    sentence = truth["speech"][1]
    middle = round((sentence["start"] + sentence["end"]) / 2, 3)
    ctx = _ctx_with_segments(engine, path, "segments", [[0.0, middle], [middle, truth["duration"]]])
    parts = [call_here(replace(ctx, part=i), "asr") for i in range(2)]
    merged = segments.merge_asr(parts)
    assert parts[0]["words"] and parts[1]["words"]
    spoken = [w["w"] for w in merged["words"] if sentence["start"] - 0.3 <= w["s"] <= sentence["end"]]
    # tiny.en mishears a word or two ("Engineers" -> "and Daenerys"); losing the words of one side
    # of the boundary would cost half the sentence.
    assert wer(words(sentence["text"]), words(" ".join(spoken))) <= 0.3, (spoken, sentence)
    starts = [w["s"] for w in merged["words"]]
    assert starts == sorted(starts)
    for a, b in zip(merged["words"], merged["words"][1:], strict=False):
        assert b["s"] >= a["e"] - 0.05, f"overlapping words (doubled?): {a} {b}"
    reference = words(" ".join(s["text"] for s in truth["speech"]))
    assert wer(reference, words(" ".join(w["w"] for w in merged["words"]))) <= 0.25


def test_a_cut_on_a_boundary_is_found(clip: tuple[Path, dict[str, Any]]) -> None:
    path, truth = clip
    cut = truth["cuts"][1]  # a boundary exactly on a cut: the second segment must still see it
    kwargs: dict[str, Any] = dict(
        fps_hint=25.0, rotation=0, threshold=27.0, detect_width=256, sample_fps=2.0, thumb_width=320
    )
    whole, *_ = shots.scan(str(path), **kwargs)
    first, *_ = shots.scan(str(path), **kwargs, end=cut)
    second, candidates, _, _ = shots.scan(str(path), **kwargs, start=cut)
    assert first + second == whole
    assert any(abs(c - cut) < 0.05 for c in second)
    assert all(c.time >= cut for c in candidates)
    assert len(whole) == len(truth["cuts"])


def test_segmented_indexing_matches_the_truth(
    engine: Engine, clip: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole pipeline in 10-s segments through the process pool: one timeline, searchable."""
    path, truth = clip
    monkeypatch.setattr(engine.settings, "segment_s", 10.0)
    (result,) = engine.index([path], org="segments", force=True)
    assert result.status == "ready", getattr(result, "error", None)
    job = engine.jobs.get(result.ref)  # type: ignore[union-attr]
    assert job is not None and {"asr_2", "shots_2", "ocr_2", "vision_2"} <= set(job["stages"])
    doc = engine.sidecar(str(path), org="segments")
    assert doc is not None and len(doc["media"]["segments"]) == 3
    scenes = doc["scenes"]
    assert scenes[0]["start"] == 0.0 and scenes[-1]["end"] == pytest.approx(truth["duration"], abs=0.1)
    assert all(a["end"] == pytest.approx(b["start"]) for a, b in itertools.pairwise(scenes))
    assert all(sc["thumbnail"] and sc["keyframes"] for sc in scenes)
    reference = words(" ".join(s["text"] for s in truth["speech"]))
    assert wer(reference, words(" ".join(sc["transcript"] for sc in scenes))) <= 0.25
    hit = engine.search("choir practised the final song", org="segments", k=1)[0]
    last = truth["speech"][2]
    assert hit["start"] <= last["end"] and hit["end"] >= last["start"]
    hit = engine.search("live from the harbour", org="segments", k=1)[0]
    caption = truth["captions"][0]
    assert hit["start"] <= caption["end"] and hit["end"] >= caption["start"]
