"""Videos in, timestamped hybrid search out: real models, real PostgreSQL + pgvector."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from heimdex.embedded.engine import Engine
from heimdex.media import sidecar

TIME_SLACK_S = 1.0


def _covers(hit: dict[str, Any], start: float, end: float) -> bool:
    """The hit's scene overlaps the truth interval (with a little slack at the edges)."""
    return hit["start"] - TIME_SLACK_S <= end and hit["end"] + TIME_SLACK_S >= start


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(reference: list[str], hypothesis: list[str]) -> float:
    d = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hypothesis, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1] / max(1, len(reference))


@pytest.mark.parametrize(
    ("query", "sentence"),
    [
        ("lighthouse keeper repaired the lamp", 0),
        ("volunteers planted trees along the valley road", 1),
        ("new dinosaur exhibition at the museum", 2),
    ],
)
def test_spoken_sentence_found_at_the_right_time(
    engine: Engine, corpus: dict[str, Any], query: str, sentence: int
) -> None:
    truth = corpus["truth"][corpus["speech"]]["speech"][sentence]
    hits = engine.search(query, k=5)
    top = hits[0]
    assert top["source"] == str(corpus["speech"])
    assert _covers(top, truth["start"], truth["end"]), (top, truth)


@pytest.mark.parametrize(
    ("query", "clip", "caption"),
    [
        ("weather warning", "speech", 0),
        ("northern railway archive", "speech", 1),  # appears 5 s into a 12 s shot, no cut
        ("chess tournament", "caption", 0),
        ("final round results", "caption", 1),
    ],
)
def test_on_screen_text_found_at_the_right_time(
    engine: Engine, corpus: dict[str, Any], query: str, clip: str, caption: int
) -> None:
    truth = corpus["truth"][corpus[clip]]["captions"][caption]
    top = engine.search(query, k=5)[0]
    assert top["source"] == str(corpus[clip])
    assert _covers(top, truth["start"], truth["end"]), (top, truth)
    assert query.split()[0] in top["text"].lower()


def test_word_error_rate_on_synthetic_speech(engine: Engine, corpus: dict[str, Any]) -> None:
    doc = engine.sidecar(str(corpus["speech"]))
    assert doc is not None
    reference = [w for s in corpus["truth"][corpus["speech"]]["speech"] for w in words(s["text"])]
    hypothesis = words(" ".join(w["w"] for w in doc["transcript"]["words"]))
    assert wer(reference, hypothesis) <= 0.15


def test_word_timestamps_fall_inside_the_spoken_interval(engine: Engine, corpus: dict[str, Any]) -> None:
    doc = engine.sidecar(str(corpus["speech"]))
    assert doc is not None
    spans = corpus["truth"][corpus["speech"]]["speech"]
    for w in doc["transcript"]["words"]:
        assert any(s["start"] - 0.8 <= w["s"] and w["e"] <= s["end"] + 0.8 for s in spans), w


def test_sidecar_is_valid_and_complete(engine: Engine, corpus: dict[str, Any]) -> None:
    doc = engine.sidecar(str(corpus["caption"]))
    assert doc is not None
    sidecar.validate(doc)
    assert doc["asset"]["source"] == str(corpus["caption"])
    assert doc["stages"]["vision"]["status"] == "skipped"
    assert "HEIMDEX_VISION_WEIGHTS" in doc["stages"]["vision"]["note"]
    assert [s["index"] for s in doc["scenes"]] == list(range(len(doc["scenes"])))
    for scene in doc["scenes"]:
        assert scene["end"] > scene["start"]
        assert scene["thumbnail"] and Path(engine.derived.url(scene["thumbnail"])).stat().st_size > 1000


def test_long_shots_are_split_into_short_scenes(engine: Engine, corpus: dict[str, Any]) -> None:
    doc = engine.sidecar(str(corpus["speech"]))
    assert doc is not None
    lengths = [s["end"] - s["start"] for s in doc["scenes"]]
    assert max(lengths) <= engine.settings.scene_max_s + 1e-6
    assert len(doc["scenes"]) > len(doc["shots"])  # the 16 s and 12 s shots were split


def test_reindexing_never_duplicates(engine: Engine, corpus: dict[str, Any]) -> None:
    before = {a["asset_id"]: a["scenes"] for a in engine.assets()}
    unchanged = engine.index([corpus["caption"]])
    assert unchanged[0].status == "ready"  # up to date: nothing ran
    forced = engine.index([corpus["caption"]], force=True)
    assert forced[0].status == "ready"
    after = {a["asset_id"]: a["scenes"] for a in engine.assets()}
    assert after == before
    hits = engine.search("chess tournament", k=20)
    keys = [(h["asset_id"], h["start"]) for h in hits]
    assert len(keys) == len(set(keys))


def test_search_json_from_the_cli(
    corpus: dict[str, Any], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    out = subprocess.run(
        [*heimdex_cmd, "search", "dinosaur exhibition", "--json", "--k", "3"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    hits = json.loads(out.stdout)
    assert 1 <= len(hits) <= 3
    assert {"source", "asset_id", "start", "end", "score", "text", "thumbnail"} <= set(hits[0])
    assert hits[0]["source"] == str(corpus["speech"])
    assert isinstance(hits[0]["start"], float) and hits[0]["end"] > hits[0]["start"]

    table = subprocess.run(
        [*heimdex_cmd, "search", "dinosaur exhibition"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "speech.mp4" in table.stdout and "score" in table.stdout.splitlines()[0]


def test_cli_sidecar_by_source_and_by_id(
    corpus: dict[str, Any], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    by_source = subprocess.run(
        [*heimdex_cmd, "sidecar", str(corpus["caption"])],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(by_source.stdout)
    by_id = subprocess.run(
        [*heimdex_cmd, "sidecar", doc["asset"]["asset_id"]],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(by_id.stdout) == doc
    missing = subprocess.run(
        [*heimdex_cmd, "sidecar", "no-such-asset"], env=cli_env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no indexed asset" in missing.stderr
