"""The bad-input corpus (tests/corpus.py) indexed as ONE batch through the CLI.

Every file ends `ready` or `failed` with a readable reason, in bounded time and memory; odd but
valid media is indexed and searchable; the batch's good clip is unaffected by its neighbours.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest

from heimdex.core.graph import STAGES
from heimdex.embedded.engine import Engine
from tests.corpus import ANCHOR_QUERY, NON_UTF8_NAME, VARIANT_CAPTION, VARIANT_WORDS, Expect, make_corpus

ORG = "badcorpus"
BATCH_TIMEOUT_S = 420  # a hang anywhere fails the test instead of stalling the suite
MAX_PEAK_RSS_MB = 2048  # the whole indexing process (models included) with a 4096x2160 clip in the batch
RESULT_LINE = re.compile(r"^(ok  |FAIL) (ready|failed)\s+([\d.]+)s  (.*?)(?:  \((.*)\))?$")


@dataclass
class Batch:
    folder: Path
    expected: dict[str, Expect]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    lines: dict[str, tuple[str, str]]  # printed path -> (status, detail)
    assets: dict[str, dict[str, Any]]  # source -> asset (from `heimdex assets --json`)


def run_measured(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str, float, float]:
    """Run `cmd`; returns (exit code, stdout, stderr, seconds, peak RSS in MB of it and its children)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            proc.returncode,
            out.read().decode(),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_maxrss / 1024,  # Linux: kilobytes
        )


def cli_json(heimdex_cmd: list[str], env: dict[str, str], *args: str) -> Any:
    run = subprocess.run(
        [*heimdex_cmd, *args, "--org", ORG], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(run.stdout)


def printed(path: Path | str) -> str:
    """How the CLI prints a path: control characters and non-UTF-8 bytes escaped, one line."""
    from heimdex.cli import shown

    return shown(str(path))


@pytest.fixture(scope="module")
def batch(
    tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str], heimdex_cmd: list[str], engine: Engine
) -> Batch:
    """Index the corpus with the CLI. The session's engine (same HEIMDEX_HOME) keeps the embedded
    database up between CLI calls and answers the searchability checks in-process."""
    root = tmp_path_factory.mktemp("bad-corpus")
    folder = root / "batch"
    expected = make_corpus(folder, root / "work")
    (folder / "sub").mkdir()
    # Hidden names ('..mp4') are skipped in folder walks, so they are named on the command line, and
    # one file is named again through `sub/..`: it must stay one source.
    extra = [
        folder / "..mp4",
        folder / "..%2F..%2Fetc%2Fpasswd.mp4",
        folder / "sub" / ".." / "good_anchor.mp4",
    ]
    code, stdout, stderr, seconds, peak = run_measured(
        [*heimdex_cmd, "index", str(folder), *map(str, extra), "--org", ORG], cli_env, BATCH_TIMEOUT_S
    )
    lines: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        m = RESULT_LINE.match(line)
        assert m, f"not a result line: {line!r}"
        assert m.group(4) not in lines, f"reported twice: {line!r}"
        lines[m.group(4)] = (m.group(2), m.group(5) or "")
    assets = {a["source"]: a for a in cli_json(heimdex_cmd, cli_env, "assets", "--json")}
    result = Batch(folder, expected, code, stdout, stderr, seconds, peak, lines, assets)
    print(f"\nbad-input corpus: {len(expected)} files in {seconds:.1f}s, peak RSS {peak:.0f} MB")
    for name, exp in expected.items():
        asset = assets.get(str(folder / name))
        status, detail = (asset["status"], asset["error"] or "") if asset else lines[printed(folder / name)]
        print(f"  {status:<6} {exp.kind:<50} {detail}")
    return result


def test_batch_ends_with_one_terminal_line_per_file_in_bounded_time(batch: Batch) -> None:
    assert batch.returncode == 2, batch.stderr[-3000:]  # some failed, none crashed the batch
    assert "Traceback" not in batch.stderr, batch.stderr[-3000:]
    assert batch.seconds < BATCH_TIMEOUT_S
    assert len(batch.expected) >= 30
    # One line per file, however odd its name: newlines and undecodable bytes are escaped.
    assert set(batch.lines) == {printed(batch.folder / name) for name in batch.expected}
    assert printed(batch.folder / "line\nbreak.mp4") == f"{batch.folder}/line\\nbreak.mp4"
    assert printed(batch.folder / os.fsdecode(NON_UTF8_NAME)) == f"{batch.folder}/caf\\xe9 \\xff archive.mp4"
    summary = re.search(r"(\d+) indexed, (\d+) failed", batch.stderr)
    assert summary, batch.stderr[-2000:]
    assert int(summary.group(1)) + int(summary.group(2)) == len(batch.expected)


def assert_readable(error: str) -> None:
    """A reason a person can act on: one line, says which stage and what is wrong, no traceback."""
    assert error and "\n" not in error and "Traceback" not in error, error
    stage, _, reason = error.partition(": ")
    assert stage in STAGES, error
    assert len(reason) >= 10, error
    # The reason is the product's own words, not an exception class standing in for one.
    assert not re.match(r"[A-Z]\w*(Error|Exception)\b", reason), error


def test_every_kind_ends_as_expected(batch: Batch) -> None:
    wrong = []
    for name, exp in batch.expected.items():
        source = str(batch.folder / name)
        asset = batch.assets.get(source)
        if name == os.fsdecode(NON_UTF8_NAME):
            # Sources are text; a name that is not UTF-8 is refused up front, by name, with the fix.
            status, detail = batch.lines[printed(source)]
            assert (status, detail) == ("failed", "file name is not valid UTF-8; rename the file")
            assert asset is None
            continue
        assert asset is not None, f"{name!r} missing from `heimdex assets`"
        line_status, line_detail = batch.lines[printed(source)]
        assert line_status == asset["status"]
        if asset["status"] == "failed":
            assert_readable(asset["error"])
            assert line_detail == printed(asset["error"])
        else:
            assert asset["status"] == "ready" and asset["error"] is None, asset
            assert asset["scenes"] >= 1 and asset["duration"] > 0, asset
        if exp.status != "either" and asset["status"] != exp.status:
            wrong.append((name, exp.status, asset["status"], asset["error"]))
        elif exp.reason and exp.reason not in (asset["error"] or ""):
            wrong.append((name, exp.reason, asset["error"]))
    assert not wrong, wrong
    # Nothing else was indexed, and no source carries a `..` or a duplicate through `sub/..`.
    assert set(batch.assets) == {str(batch.folder / n) for n in batch.expected} - {
        str(batch.folder / os.fsdecode(NON_UTF8_NAME))
    }
    assert not any("/../" in s or "/./" in s for s in batch.assets)


def test_odd_media_is_searchable(batch: Batch, engine: Engine) -> None:
    by_speech = engine.search("museum opens a dinosaur exhibition", org=ORG, k=200)
    by_caption = engine.search(VARIANT_CAPTION.lower(), org=ORG, k=200)
    said = {h["source"] for h in by_speech if any(w in h["text"].lower() for w in VARIANT_WORDS)}
    shown_text = {h["source"] for h in by_caption if VARIANT_CAPTION in h["text"]}
    want_speech = {str(batch.folder / n) for n, e in batch.expected.items() if e.speech}
    want_caption = {str(batch.folder / n) for n, e in batch.expected.items() if e.caption}
    assert len(want_speech) >= 15 and len(want_caption) >= 13
    assert want_speech - said == set()
    assert want_caption - shown_text == set()


def test_good_clip_is_found_first(batch: Batch, cli_env: dict[str, str], heimdex_cmd: list[str]) -> None:
    hits = cli_json(heimdex_cmd, cli_env, "search", ANCHOR_QUERY, "--k", "3", "--json")
    assert hits[0]["source"] == str(batch.folder / "good_anchor.mp4")
    assert "lamp" in hits[0]["text"].lower()


def test_long_silence_gives_no_words(batch: Batch, engine: Engine) -> None:
    doc = engine.sidecar(str(batch.folder / "silent_3min.mp4"), org=ORG)
    assert doc is not None
    assert doc["media"]["duration"] == pytest.approx(180.0, abs=0.5)
    words = doc["transcript"]["words"]
    assert len(words) <= 2, words  # Whisper invents "Thank you." in room tone unless guarded


def test_rotated_clip_is_seen_upright(batch: Batch, engine: Engine, home: Path) -> None:
    doc = engine.sidecar(str(batch.folder / "phone_rotated.mp4"), org=ORG)
    assert doc is not None
    assert doc["media"]["video"]["rotation"] == 90
    assert (doc["media"]["video"]["width"], doc["media"]["video"]["height"]) == (360, 640)
    assert any(VARIANT_CAPTION in kf["ocr"] for kf in doc["keyframes"])  # readable only when turned upright
    thumb = cv2.imread(str(home / doc["keyframes"][0]["thumb"]))
    assert thumb is not None and thumb.shape[1] > thumb.shape[0]  # displayed landscape


def test_memory_stays_bounded_with_a_4k_clip(batch: Batch) -> None:
    assert batch.assets[str(batch.folder / "huge_4096x2160.mp4")]["status"] == "ready"
    assert batch.peak_rss_mb < MAX_PEAK_RSS_MB, f"peak RSS {batch.peak_rss_mb:.0f} MB"
