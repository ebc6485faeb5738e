"""Broken files in a batch end `failed` with a readable reason; the good ones are still searchable."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from heimdex.dev.samples import Segment, ffmpeg, make_clip
from heimdex.domain import MediaError
from heimdex.stages.probe import probe_file

GOOD = [
    Segment(6.0, speech="The orchestra rehearsed the symphony in the old cathedral."),
    Segment(5.0, caption="SPRING CONCERT"),
]


def make_bad_files(folder: Path, good: Path) -> dict[str, str]:
    """name -> expected words of the failure reason ('' where either outcome is acceptable)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random_bytes.mp4").write_bytes(random.Random(7).randbytes(200_000))
    (folder / "notes.mp4").write_text("these are meeting notes, not a video\n" * 50)
    cv2.imwrite(str(folder / "still.png"), np.full((240, 320, 3), 128, np.uint8))
    (folder / "still.png").rename(folder / "still_image.mp4")
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-c:a",
        "aac",
        "-f",
        "mp4",
        folder / "audio_only.mp4",
    )
    data = good.read_bytes()
    (folder / "header_only.mp4").write_bytes(data[:2048])
    return {
        "empty.mp4": "empty file",
        "random_bytes.mp4": "not a readable media file",
        "notes.mp4": "not a readable media file",
        "still_image.mp4": "still image",
        "audio_only.mp4": "no video stream",
        "header_only.mp4": "",
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("batch")
    good = folder / "good_concert.mp4"
    make_clip(GOOD, good)
    return folder, good, make_bad_files(folder, good)


def test_batch_with_broken_files(
    batch: tuple[Path, Path, dict[str, str]], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    folder, good, expected = batch
    run = subprocess.run(
        [*heimdex_cmd, "index", str(folder), "--org", "badbatch"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 2, run.stderr
    result_lines = [ln for ln in run.stdout.splitlines() if ln.startswith(("ok ", "FAIL"))]
    assert len(result_lines) == len(expected) + 1

    listing = subprocess.run(
        [*heimdex_cmd, "assets", "--json", "--org", "badbatch"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assets = {Path(a["source"]).name: a for a in json.loads(listing.stdout)}
    assert assets["good_concert.mp4"]["status"] == "ready"
    for name, reason in expected.items():
        asset = assets[name]
        if reason:
            assert asset["status"] == "failed", asset
            assert reason in asset["error"], asset
        else:
            assert asset["status"] in ("ready", "failed")
            assert asset["status"] == "ready" or asset["error"]

    hits = json.loads(
        subprocess.run(
            [*heimdex_cmd, "search", "orchestra rehearsal in a cathedral", "--json", "--org", "badbatch"],
            env=cli_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert hits[0]["source"] == str(good)


def test_missing_path_is_reported_not_crashed(
    tmp_path: Path, cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    run = subprocess.run(
        [*heimdex_cmd, "index", str(tmp_path / "nope.mp4"), "--org", "badbatch"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "cannot read" in run.stdout


@pytest.mark.parametrize("name", ["empty.mp4", "random_bytes.mp4", "still_image.mp4", "audio_only.mp4"])
def test_probe_rejects_with_reason(batch: tuple[Path, Path, dict[str, str]], name: str) -> None:
    folder, _, _ = batch
    with pytest.raises(MediaError):
        probe_file(str(folder / name), max_duration_s=3600)


def test_probe_reports_streams(batch: tuple[Path, Path, dict[str, Any]]) -> None:
    _, good, _ = batch
    info = probe_file(str(good), max_duration_s=3600)
    assert info["video"]["codec"] == "h264"
    assert (info["video"]["width"], info["video"]["height"]) == (640, 360)
    assert info["video"]["fps"] == pytest.approx(25.0)
    assert info["audio"]["codec"] == "aac"
    assert info["duration"] == pytest.approx(11.0, abs=0.2)
