"""Scene building: long shots split at pauses, words by midpoint, keyframes by overlap."""

from __future__ import annotations

import itertools

from heimdex.media.scenes import build_scenes, merge_readings, split_points


def w(word: str, s: float, e: float) -> dict[str, object]:
    return {"w": word, "s": s, "e": e}


def test_short_shot_is_one_scene() -> None:
    assert split_points(0.0, 8.0, [], 2.0, 10.0) == []


def test_long_shot_is_cut_at_the_widest_pause() -> None:
    words = [w("a", 1.0, 2.0), w("b", 2.1, 3.0), w("c", 6.0, 6.5), w("d", 6.6, 7.5), w("e", 12.0, 13.0)]
    cuts = split_points(0.0, 20.0, words, 2.0, 10.0)
    assert cuts[0] == (7.5 + 12.0) / 2  # the 4.5 s pause, not the 3 s one
    assert all(b - a <= 10.0 for a, b in zip([0.0, *cuts], [*cuts, 20.0], strict=True))


def test_without_pauses_the_cut_avoids_splitting_a_word() -> None:
    words = [w("long", 9.5, 10.5)]
    cuts = split_points(0.0, 20.0, words, 2.0, 10.0)
    assert cuts and not any(9.5 < c < 10.5 for c in cuts)


def test_no_tiny_trailing_scene() -> None:
    cuts = split_points(0.0, 10.5, [], 2.0, 10.0)
    bounds = [0.0, *cuts, 10.5]
    assert min(b - a for a, b in itertools.pairwise(bounds)) >= 2.0


def test_build_scenes_assigns_words_ocr_and_thumbs() -> None:
    shots = [{"start": 0.0, "end": 5.0}, {"start": 5.0, "end": 9.0}]
    words = [w("hello", 1.0, 1.5), w("there", 4.8, 5.4)]  # midpoint 5.1 -> second scene
    keyframes = [
        {"index": 0, "start": 0.0, "end": 5.0, "sharpness": 10.0, "thumb": "t0"},
        {"index": 1, "start": 5.0, "end": 9.0, "sharpness": 10.0, "thumb": "t1"},
    ]
    scenes = build_scenes(
        shots, words, keyframes, {1: "EXIT SIGN"}, [[1.0, 0.0], [0.0, 1.0]], min_s=2.0, max_s=10.0
    )
    assert [s.transcript for s in scenes] == ["hello", "there"]
    assert scenes[1].ocr_text == "EXIT SIGN" and scenes[1].text == "there EXIT SIGN"
    assert [s.thumb for s in scenes] == ["t0", "t1"]
    assert scenes[0].image_vec == [1.0, 0.0]


def test_merge_readings_drops_partial_duplicates() -> None:
    assert merge_readings(["RECORDED 14", "RECORDED 14 MARCH", "", "Other"]) == ["RECORDED 14 MARCH", "Other"]


def test_a_sentence_before_a_long_silence_stays_whole() -> None:
    sentence = [w(f"w{i}", 3.0 + 0.4 * i, 3.35 + 0.4 * i) for i in range(12)]  # 3.0 .. 7.75, no real pause
    cuts = split_points(0.0, 12.0, sentence, 2.0, 10.0)
    assert len(cuts) == 1 and cuts[0] >= 7.75
