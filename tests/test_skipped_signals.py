"""A skipped signal never fails the asset (issue 19, part 7).

Speech (asr), on-screen text (ocr) and image vectors (vision) are optional: when a stage's model or
tool is missing the asset is still indexed, `ready`, searchable by the signals that ran, and
`heimdex assets --json` and the sidecar say which signal was skipped and why. A model setting that
points at nothing is reported once, before any file is processed. This module has its own
HEIMDEX_HOME (and PostgreSQL), so the session's shared index is not touched.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heimdex.cloud.service import EXIT_CONFIG, preload
from heimdex.core.graph import OPTIONAL
from heimdex.dev.samples import Segment
from heimdex.domain import AssetRef
from heimdex.embedded.dispatch import JobResult
from heimdex.embedded.engine import Engine, Skipped
from heimdex.media import sidecar
from heimdex.models import Models, ModelUnavailable
from heimdex.stages.index import assemble
from tests.conftest import JWT_SECRET, make_clips, settings_for

# Speech in one shot, a caption in the other: each signal can be found on its own.
CLIP = [
    Segment(6.0, speech="The museum will open a new dinosaur exhibition next summer."),
    Segment(6.0, caption="MOUNTAIN RESCUE TEAM"),
]
# A Whisper setting that is neither a folder nor a faster-whisper model name (`base` is one: issue 18).
MISSING_ASR = "whisper-base"
NO_WHISPER = f"no CTranslate2 Whisper model at {MISSING_ASR}"
MISSING_WEIGHTS = "/nonexistent/open_clip/ViT-B-32.pt"


@pytest.fixture(scope="module")
def skip_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("skipped-home")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("skipped-media")
    return make_clips(folder, {"dinosaur_and_rescue": CLIP})["dinosaur_and_rescue"]


@pytest.fixture(scope="module")
def base_engine(skip_home: Path) -> Iterator[Engine]:
    """Holds the module's PostgreSQL for the module's lifetime; engines with other settings join it."""
    eng = Engine(settings_for(skip_home))
    yield eng
    eng.close()


@pytest.fixture()
def engine_with(skip_home: Path, base_engine: Engine) -> Iterator[Any]:
    made: list[Engine] = []

    def make(**overrides: Any) -> Engine:
        made.append(Engine(settings_for(skip_home, **overrides)))
        return made[-1]

    yield make
    for eng in made:
        eng.close()


@pytest.fixture(scope="module")
def cli_env(skip_home: Path, base_engine: Engine) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(
        HEIMDEX_HOME=str(skip_home), HEIMDEX_JWT_SECRET=JWT_SECRET, HEIMDEX_WORKERS="3", PYTHONUNBUFFERED="1"
    )
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, stdout and stderr in one stream (in the order written: PYTHONUNBUFFERED)."""
    return subprocess.run(
        [sys.executable, "-m", "heimdex.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def cli_assets(env: dict[str, str], org: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "heimdex.cli", "assets", "--json", "--org", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assets: list[dict[str, Any]] = json.loads(out.stdout)
    return assets


def assert_indexed_without(
    engine: Engine, env: dict[str, str], clip: Path, org: str, expected: dict[str, str]
) -> dict[str, Any]:
    """The asset is ready, and `heimdex assets --json` and the sidecar name exactly the `expected`
    skipped signals with their reasons (vision, not configured in these tests, is always among them)."""
    [asset] = cli_assets(env, org)
    assert asset["status"] == "ready" and asset["error"] is None, asset
    assert asset["scenes"] >= 2  # scenes still come from the two shots
    assert set(asset["skipped"]) == set(expected) | {"vision"}, asset["skipped"]
    for signal, reason in expected.items():
        assert asset["skipped"][signal] == reason
    doc = engine.sidecar(str(clip), org=org)
    assert doc is not None
    sidecar.validate(doc)
    for signal in OPTIONAL:
        state = doc["stages"][signal]
        if signal in asset["skipped"]:
            assert state == {"status": "skipped", "note": asset["skipped"][signal]}
        else:
            assert state == {"status": "done"}
    return doc


def texts(hits: list[dict[str, Any]], clip: Path) -> str:
    return " ".join(h["text"] for h in hits if h["source"] == str(clip)).lower()


# -- each optional stage, skipped -------------------------------------------------------------------


def test_asr_model_that_points_at_nothing(
    cli_env: dict[str, str], clip: Path, engine_with: Any, base_engine: Engine
) -> None:
    """HEIMDEX_ASR_MODEL=whisper-base (no such folder, no such model name): said once before any file,
    the file indexed without speech (exit 0);
    once the model is there, the next run indexes it again with speech."""
    out = run_cli({**cli_env, "HEIMDEX_ASR_MODEL": MISSING_ASR}, "index", str(clip), "--org", "noasr")
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    problem = [i for i, line in enumerate(lines) if f"HEIMDEX_ASR_MODEL={MISSING_ASR}" in line]
    first_file = next(i for i, line in enumerate(lines) if line.startswith(("ok ", "FAIL")))
    assert len(problem) == 1 and problem[0] < first_file, out.stdout
    assert "speech will be skipped for every file" in lines[problem[0]]
    assert out.stdout.count(NO_WHISPER) == 1, out.stdout  # not once per file, not a traceback
    assert "Traceback" not in out.stdout
    assert lines[first_file].startswith("ok   ready") and str(clip) in lines[first_file]

    doc = assert_indexed_without(base_engine, cli_env, clip, "noasr", {"asr": NO_WHISPER})
    assert doc["transcript"]["words"] == []
    assert "rescue" in texts(base_engine.search("mountain rescue team", org="noasr"), clip)
    assert "dinosaur" not in texts(base_engine.search("dinosaur exhibition", org="noasr", k=10), clip)

    # Still no model: nothing to redo. The model configured: the asset is indexed again, with speech.
    again = engine_with(asr_model=MISSING_ASR).index([clip], org="noasr")
    assert isinstance(again[0], Skipped) and again[0].status == "ready"
    fixed = base_engine.index([clip], org="noasr")
    assert isinstance(fixed[0], JobResult) and fixed[0].status == "ready", fixed
    [asset] = base_engine.assets(org="noasr")
    assert set(asset["skipped"]) == {"vision"}
    assert "dinosaur" in texts(base_engine.search("dinosaur exhibition", org="noasr"), clip)


@pytest.mark.parametrize(
    ("engine_name", "missing", "why"),
    [
        ("rapidocr", "heimdex.models.find_rapidocr", "rapidocr-onnxruntime is not installed"),
        ("tesseract", "heimdex.models.find_tesseract", "tesseract is not installed"),
    ],
)
def test_ocr_skipped_when_its_engine_is_missing(
    monkeypatch: pytest.MonkeyPatch,
    cli_env: dict[str, str],
    clip: Path,
    engine_with: Any,
    engine_name: str,
    missing: str,
    why: str,
) -> None:
    monkeypatch.setattr(missing, lambda: None)
    engine = engine_with(ocr_engine=engine_name)
    org = f"noocr-{engine_name}"
    [result] = engine.index([clip], org=org)
    assert result.status == "ready", result
    doc = assert_indexed_without(engine, cli_env, clip, org, {"ocr": why})
    assert all(scene["ocr"] == "" for scene in doc["scenes"])
    assert doc["transcript"]["words"]
    assert "dinosaur" in texts(engine.search("dinosaur exhibition", org=org), clip)
    assert "rescue" not in texts(engine.search("mountain rescue team", org=org, k=10), clip)


def test_vision_skipped_when_its_weights_are_missing(
    cli_env: dict[str, str], clip: Path, engine_with: Any
) -> None:
    engine = engine_with(vision_weights=MISSING_WEIGHTS)
    [result] = engine.index([clip], org="novision")
    assert result.status == "ready", result
    doc = assert_indexed_without(
        engine, cli_env, clip, "novision", {"vision": f"vision weights not found: {MISSING_WEIGHTS}"}
    )
    assert doc["models"]["image"] is None
    # Search works without the image model: text and keyword ranks answer.
    assert "dinosaur" in texts(engine.search("dinosaur exhibition", org="novision"), clip)
    assert "rescue" in texts(engine.search("mountain rescue team", org="novision"), clip)
    # Indexed as well as it can be with the weights missing: the next run has nothing to do.
    assert isinstance(engine.index([clip], org="novision")[0], Skipped)


def test_every_optional_signal_skipped(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], clip: Path, engine_with: Any
) -> None:
    """No speech, no on-screen text, no image vectors: scenes from shots, ready, nothing to find."""
    monkeypatch.setattr("heimdex.models.find_rapidocr", lambda: False)
    engine = engine_with(asr_model=MISSING_ASR, vision_weights=MISSING_WEIGHTS)
    [result] = engine.index([clip], org="nosignal")
    assert result.status == "ready", result
    expected = {
        "asr": NO_WHISPER,
        "ocr": "rapidocr-onnxruntime is not installed",
        "vision": f"vision weights not found: {MISSING_WEIGHTS}",
    }
    doc = assert_indexed_without(engine, cli_env, clip, "nosignal", expected)
    assert len(doc["scenes"]) >= len(doc["shots"]) == 2
    assert engine.search("dinosaur exhibition mountain rescue", org="nosignal") == []
    table = run_cli(cli_env, "assets", "--org", "nosignal")
    assert table.returncode == 0, table.stdout
    header, _, row = table.stdout.splitlines()[:3]
    assert header.split()[-1] == "skipped"
    assert row.startswith("ready") and all(f"{signal}: {why}" in row for signal, why in expected.items())


# -- settings that point at nothing, reported before any file ---------------------------------------


def test_missing_text_model_stops_before_any_file(
    cli_env: dict[str, str], clip: Path, skip_home: Path, engine_with: Any
) -> None:
    missing = str(skip_home / "no-such-text-model")
    out = run_cli({**cli_env, "HEIMDEX_TEXT_MODEL": missing}, "index", str(clip), "--org", "notext")
    assert out.returncode == 64, out.stdout
    problem = [line for line in out.stdout.splitlines() if f"HEIMDEX_TEXT_MODEL={missing}" in line]
    assert len(problem) == 1 and "nothing can be indexed" in problem[0], out.stdout
    assert "Traceback" not in out.stdout
    assert not [line for line in out.stdout.splitlines() if line.startswith(("ok ", "FAIL"))]
    assert cli_assets(cli_env, "notext") == []
    with pytest.raises(ModelUnavailable, match="no sentence-transformers model"):
        engine_with(text_model=missing).index([clip], org="notext")


def test_index_is_not_optional(monkeypatch: pytest.MonkeyPatch, clip: Path, engine_with: Any) -> None:
    """Past the check (the model gone mid-run), a missing text model fails the job with the reason:
    never a `skipped` index stage that would leave the asset `processing`."""
    engine = engine_with(asr_model=MISSING_ASR, text_model="/gone/text-model")
    monkeypatch.setattr(engine.models, "check", lambda stages=None: [])
    [result] = engine.index([clip], org="textgone")
    assert result.status == "failed"
    assert result.error == "index: no sentence-transformers model at /gone/text-model", result
    [asset] = engine.assets(org="textgone")
    assert asset["status"] == "failed" and "no sentence-transformers model" in asset["error"]


@pytest.mark.parametrize(
    ("overrides", "stage", "words"),
    [
        (
            {"asr_model": MISSING_ASR},
            "asr",
            [f"HEIMDEX_ASR_MODEL={MISSING_ASR}", NO_WHISPER, "speech will be skipped"],
        ),
        (
            {"asr_model": "small", "asr_download": False},
            "asr",
            ["HEIMDEX_ASR_MODEL=small", "Whisper small is not on this machine and downloads are off"],
        ),
        ({"asr_model": "/opt/models/whisper-small"}, "asr", ["no CTranslate2 Whisper model at /opt"]),
        ({"vision_weights": MISSING_WEIGHTS}, "vision", ["HEIMDEX_VISION_WEIGHTS", "image vectors"]),
        ({"text_model": "/nope"}, "index", ["HEIMDEX_TEXT_MODEL=/nope", "nothing can be indexed"]),
        (
            {"ocr_engine": "tesseract", "ocr_languages": "eng+xx"},
            "ocr",
            ["HEIMDEX_OCR_LANGUAGES=eng+xx", "language data for xx"],
        ),
    ],
)
def test_check_names_the_setting_and_the_effect(
    skip_home: Path, overrides: dict[str, Any], stage: str, words: list[str]
) -> None:
    problems = Models(settings_for(skip_home, **overrides)).check()
    assert [p.stage for p in problems] == [stage]
    assert problems[0].fatal == (stage == "index")
    for word in words:
        assert word in str(problems[0])


def test_defaults_have_no_problems(skip_home: Path) -> None:
    assert Models(settings_for(skip_home)).check() == []


def test_stage_services_report_at_start_up(
    caplog: pytest.LogCaptureFixture, engine_with: Any, skip_home: Path
) -> None:
    """Cloud: the asr service logs the problem once and starts (its tasks are then skipped); the
    index service cannot work without the text model and does not start."""
    engine = engine_with(asr_model=MISSING_ASR)
    with caplog.at_level(logging.ERROR, logger="heimdex.cloud.service"):
        preload("asr", engine)
        preload("ocr", engine)
    assert [r.getMessage() for r in caplog.records] == [str(engine.models.check(["asr"])[0])]
    with pytest.raises(SystemExit) as stopped:
        preload("index", engine_with(text_model=str(skip_home / "nope")))
    assert stopped.value.code == EXIT_CONFIG


# -- the index stage with any subset skipped, in all segments or some (no database) -----------------


def _parts(stage: str, skipped: str, n: int) -> list[dict[str, Any]]:
    """Two segments' outputs of `stage`; skipped in both ('all'), the second ('some') or none."""
    shots = [
        {"start": 0.0, "end": 5.0, "time": 2.0, "thumb": "t0.jpg", "shot": 0, "sharpness": 1.0},
        {"start": 5.0, "end": 10.0, "time": 7.0, "thumb": "t1.jpg", "shot": 0, "sharpness": 1.0},
    ]
    docs: list[dict[str, Any]] = []
    for i in range(n):
        a, b = 10.0 * i, 10.0 * (i + 1)
        if stage == "shots":
            kfs = [
                {**kf, "index": j, "start": kf["start"] + a, "end": kf["end"] + a}
                for j, kf in enumerate(shots)
            ]
            docs.append(
                {"duration": b, "cuts": [a] if i else [], "shots": [{"start": a, "end": b}], "keyframes": kfs}
            )
        elif stage == "asr":
            docs.append(
                {
                    "model": "whisper:tiny.en",
                    "language": "en",
                    "segments": [{"start": a + 1, "end": a + 2, "text": f"word{i}"}],
                    "words": [{"w": f"word{i}", "s": a + 1, "e": a + 2, "p": 0.9}],
                }
            )
        elif stage == "ocr":
            docs.append({"engine": "tesseract", "keyframes": [{"keyframe": 0, "text": f"CAPTION{i}"}]})
        elif stage == "faces":
            track = {"shot": 0, "start": a + 1, "end": a + 2, "time": a + 1, "box": [0.1, 0.1, 0.3, 0.3]}
            track |= {"quality": 0.5, "detections": 2, "thumb": f"f{i}.jpg", "embedding": [0.0] * 128}
            docs.append({"model": "dlib:test", "frames": 10, "tracks": [track]})
        else:
            docs.append({"model": "clip:test", "dim": 2, "vectors": [[1.0, 0.0], [0.0, 1.0]]})
    if skipped == "all":
        docs = [{"skipped": f"no {stage} model"} for _ in docs]
    elif skipped == "some":
        docs[-1] = {"skipped": f"no {stage} model"}
    return docs


SUBSETS = [(1, s) for s in itertools.product(["none", "all"], repeat=len(OPTIONAL))] + [
    (2, s) for s in itertools.product(["none", "all", "some"], repeat=len(OPTIONAL))
]


@pytest.mark.parametrize(("segments", "skips"), SUBSETS)
def test_index_assembles_any_subset_of_skipped_signals(segments: int, skips: tuple[str, ...]) -> None:
    """Every subset of asr/ocr/vision/faces skipped, in every segment ('all') or one of two ('some')."""
    how = dict(zip(OPTIONAL, skips, strict=True))
    parts = {stage: _parts(stage, how.get(stage, "none"), segments) for stage in ("shots", *OPTIONAL)}
    ref = AssetRef("org", "asset", "/media/clip.mp4", "1")
    probe = {
        "format": "mp4",
        "duration": 10.0 * segments,
        "video": {"codec": "h264", "width": 64, "height": 64, "rotation": 0},
    }
    built = assemble(ref, probe, parts, min_s=2.0, max_s=10.0, asr_name="whisper:base", text_name="st:test")
    sidecar.validate(built.sidecar)
    assert len(built.scenes) == segments  # one shot per segment, each 10 s: scenes come from shots
    for stage in OPTIONAL:
        state = built.sidecar["stages"][stage]
        if how[stage] == "none":
            assert state == {"status": "done"} and stage not in built.skipped
        elif how[stage] == "all":
            assert state == {"status": "skipped", "note": f"no {stage} model"}
            assert built.skipped[stage] == f"no {stage} model"
        else:
            assert state == {"status": "done", "note": f"skipped in 1 of 2 segments: no {stage} model"}
            assert built.skipped[stage] == state["note"]
    ran = {stage: segments - (how[stage] == "all") * segments - (how[stage] == "some") for stage in OPTIONAL}
    text = " ".join(scene.text for scene in built.scenes)
    assert text.count("word") == ran["asr"] and text.count("CAPTION") == ran["ocr"]
    with_vectors = [scene for scene in built.scenes if scene.image_vec is not None]
    assert len(with_vectors) == ran["vision"]
    assert built.image_model == ("clip:test" if ran["vision"] else None)
    assert len(built.faces) == ran["faces"] and all(f["scene_lo"] == f["scene_hi"] for f in built.faces)
