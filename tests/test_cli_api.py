"""The command line of issue 14: `heimdex captions`, `heimdex search --edl/--csv` and filter flags,
`heimdex asset`, `heimdex rm`; run as a user runs them (subprocess) over the session's index."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pycmx

from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import Engine


def run(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done


def test_captions_asset_and_edit_lists(
    heimdex_cmd: list[str], cli_env: dict[str, str], corpus: dict[str, Any], engine: Engine
) -> None:
    speech = str(corpus["speech"])
    (row,) = engine.resolve_assets(speech, org="default")
    vtt = run(heimdex_cmd, cli_env, "captions", row["asset_id"]).stdout
    assert vtt.startswith("WEBVTT\nLanguage: en\n\n") and "dinosaur" in vtt
    srt = run(heimdex_cmd, cli_env, "captions", speech, "--format", "srt").stdout
    assert srt.startswith("1\n00:00:") and " --> " in srt
    asset = json.loads(run(heimdex_cmd, cli_env, "asset", speech).stdout)
    assert asset["asset_id"] == row["asset_id"] and asset["media"]["video"]["fps"] > 0
    assert asset["stages"]["index"]["status"] == "done" and asset["models"]["text"]
    q = "lighthouse dinosaur oak trees chess"
    edl = run(heimdex_cmd, cli_env, "search", q, "--k", "3", "--edl").stdout
    events = list(pycmx.parse_cmx3600(io.StringIO(edl)).events)
    hits = json.loads(run(heimdex_cmd, cli_env, "search", q, "--k", "3", "--json").stdout)
    assert len(events) == len(hits) == 3
    assert [e.edits[0].clip_name for e in events] == [Path(h["source"]).name for h in hits]
    csv = run(heimdex_cmd, cli_env, "search", q, "--k", "3", "--csv").stdout.strip().splitlines()
    assert len(csv) == 4 and csv[0].startswith("rank,score,clip")
    text = json.loads(run(heimdex_cmd, cli_env, "search", q, "--kind", "text", "--json").stdout)
    assert text and all(h["text"] for h in text)
    only = json.loads(run(heimdex_cmd, cli_env, "search", q, "--asset", row["asset_id"], "--json").stdout)
    assert only and {h["asset_id"] for h in only} == {row["asset_id"]}
    later = json.loads(run(heimdex_cmd, cli_env, "search", q, "--after", "2999-01-01", "--json").stdout)
    assert later == []


def test_rm_removes_from_the_index_and_keeps_the_file(
    heimdex_cmd: list[str], cli_env: dict[str, str], engine: Engine, media_dir: Path
) -> None:
    clip = media_dir / "cli-rm.mp4"
    make_clip([Segment(4.0, caption="REMOVABLE HARBOUR")], clip)
    (result,) = engine.index([clip], org="cli-rm")
    assert result.status == "ready"
    out = run(heimdex_cmd, cli_env, "rm", str(clip), "--org", "cli-rm").stdout
    assert out.startswith("removed ") and str(clip) in out
    assert json.loads(run(heimdex_cmd, cli_env, "assets", "--org", "cli-rm", "--json").stdout) == []
    assert clip.exists()
    missing = subprocess.run(
        [*heimdex_cmd, "rm", str(clip), "--org", "cli-rm"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 2 and "no indexed asset" in missing.stderr
