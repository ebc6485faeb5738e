"""Shot cuts on a clip with known cuts; the vision stage's wiring with a random-init open_clip model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import Engine
from heimdex.models import import_vision_libraries
from heimdex.stages.shots import scan
from tests.conftest import settings_for

CUT_CLIP = [Segment(3.0), Segment(2.5), Segment(4.0), Segment(1.5), Segment(3.0)]


def test_cuts_match_the_known_cuts(tmp_path: Path) -> None:
    truth = make_clip(CUT_CLIP, tmp_path / "cuts.mp4")
    cuts, candidates, last_t, bad = scan(
        str(tmp_path / "cuts.mp4"),
        fps_hint=25.0,
        rotation=0,
        threshold=27.0,
        detect_width=256,
        sample_fps=2.0,
        thumb_width=320,
    )
    assert bad == 0
    assert len(cuts) == len(truth["cuts"])
    for found, expected in zip(cuts, truth["cuts"], strict=True):
        assert found == pytest.approx(expected, abs=0.05)  # within about one frame at 25 fps
    assert last_t == pytest.approx(truth["duration"], abs=0.1)
    assert len(candidates) == pytest.approx(truth["duration"] * 2, abs=2)


def test_vision_vectors_with_a_random_init_model(home: Path, corpus: dict[str, Any]) -> None:
    """Random weights test the wiring only: vectors are made, stored with their model, and searched."""
    # Installed by scripts/setup.sh: missing must fail, not skip. Imported as the vision stage does
    # (with the CPU torch, `import open_clip` alone fails unless something declared torchvision's ops).
    import_vision_libraries()

    engine = Engine(settings_for(home, vision_random_init=True))
    try:
        results = engine.index([corpus["caption"]], org="vision", force=True)
        assert results[0].status == "ready", results
        doc = engine.sidecar(str(corpus["caption"]), org="vision")
        assert doc is not None and doc["stages"]["vision"]["status"] == "done"
        assert doc["models"]["image"] == "clip:ViT-B-32:random-init"
        with engine.db.org_tx("vision") as conn:
            row = conn.execute("SELECT count(*), count(image_vec), min(image_model) FROM scenes").fetchone()
        assert row is not None and row[0] == row[1] > 0 and row[2] == "clip:ViT-B-32:random-init"
        assert engine.search("chess tournament", org="vision")[0]["source"] == str(corpus["caption"])
    finally:
        engine.close()
