"""Shared fixtures: one embedded PostgreSQL + pgvector and one engine (real models) per session,
and a small corpus of generated clips with known speech, captions and cuts, indexed once."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heimdex.config import Settings
from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import Engine

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"

# Clip with speech in separate shots, and a caption that appears in the middle of a long shot.
SPEECH_CLIP = [
    Segment(7.0, speech="The lighthouse keeper repaired the lamp during the storm."),
    Segment(8.0, caption="WEATHER WARNING"),
    Segment(
        16.0, speech="Our volunteers planted young oak trees along the quiet valley road.", speech_at=9.0
    ),
    Segment(9.0, speech="The museum will open a new dinosaur exhibition next summer."),
    Segment(12.0, caption="NORTHERN RAILWAY ARCHIVE", caption_span=(5.0, 11.0)),
]
CAPTION_CLIP = [
    Segment(6.0, caption="ANNUAL CHESS TOURNAMENT"),
    Segment(7.0, speech="Players travelled from twelve countries to compete."),
    Segment(6.0, caption="FINAL ROUND RESULTS"),
]


def make_clips(folder: Path, specs: dict[str, list[Segment]]) -> dict[str, Path]:
    """Render each named clip into `folder` as `<name>.mp4`."""
    out = {}
    for name, segments in specs.items():
        out[name] = folder / f"{name}.mp4"
        make_clip(segments, out[name])
    return out


def settings_for(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, jwt_secret=JWT_SECRET, workers=3, database_url=None, **overrides)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("heimdex-home")


@pytest.fixture(scope="session")
def engine(home: Path) -> Iterator[Engine]:
    eng = Engine(settings_for(home))
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def corpus(engine: Engine, media_dir: Path) -> dict[str, Any]:
    """Two clips indexed into org 'default'; returns their paths and ground truth."""
    speech = media_dir / "speech.mp4"
    caption = media_dir / "caption.mp4"
    truth = {speech: make_clip(SPEECH_CLIP, speech), caption: make_clip(CAPTION_CLIP, caption)}
    results = engine.index([speech, caption], org="default")
    assert all(r.status == "ready" for r in results), results
    return {"speech": speech, "caption": caption, "truth": truth}


@pytest.fixture(scope="session")
def cli_env(home: Path) -> dict[str, str]:
    """Environment for running the CLI in a subprocess against the session's index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(HEIMDEX_HOME=str(home), HEIMDEX_JWT_SECRET=JWT_SECRET, HEIMDEX_WORKERS="3")
    return env


@pytest.fixture(scope="session")
def heimdex_cmd() -> list[str]:
    return [sys.executable, "-m", "heimdex.cli"]


@pytest.fixture(scope="module")
def firestore_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client of a Firestore emulator of the module's own (google-cloud-cli's, started here)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from heimdex.dev import emulators

    proc = emulators.firestore(tmp_path_factory.mktemp("firestore-logs"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FIRESTORE_EMULATOR_HOST", proc.env["FIRESTORE_EMULATOR_HOST"])
            yield firestore.Client(project="heimdex-test", credentials=AnonymousCredentials())
    finally:
        proc.stop()
