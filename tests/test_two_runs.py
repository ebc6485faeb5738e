"""One HEIMDEX_HOME, several users: two `heimdex index` runs at once over overlapping files, a run
interrupted with Ctrl-C and run again, and `heimdex serve` stopped with SIGTERM. Every file is
indexed exactly once, the second run says what it waits for, and nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from heimdex.dev.emulators import free_port
from heimdex.dev.samples import Segment
from heimdex.domain import AssetRef
from heimdex.embedded.claims import SourceClaims
from heimdex.embedded.engine import Engine
from tests import waiting
from tests.conftest import make_clips

TIMEOUT_S = 300
CLIPS = {
    "quarry": [
        Segment(6.0, speech="Stonemasons cut granite blocks from the old quarry by hand."),
        Segment(5.0, caption="LOCAL CRAFTS"),
    ],
    "ferris": [
        Segment(6.0, speech="The ferris wheel at the seaside fair turned until midnight."),
        Segment(5.0, caption="SUMMER FAIR"),
    ],
    "beacon": [
        Segment(6.0, speech="Volunteers lit the hilltop beacon to mark the anniversary."),
        Segment(5.0, caption="ANNIVERSARY"),
    ],
}


wait_for = partial(waiting.wait_for, timeout=TIMEOUT_S)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """A CLI process whose output lines are collected as they come."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            # As a terminal's foreground command has it: a suite started in the background of a
            # non-interactive shell (CI, nohup) inherits SIGINT ignored, and Ctrl-C would not arrive.
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def err(self) -> str:
        return "\n".join(self.err_lines)

    def finish(self, timeout: float = TIMEOUT_S) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)
        return code


def home_env(cli_env: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    return {**cli_env, "HEIMDEX_HOME": str(home), **extra}


def postmaster(home: Path) -> psutil.Process | None:
    """The embedded PostgreSQL of a home, if it runs."""
    pid_file = home / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        proc = psutil.Process(pid)
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        return None
    return proc if alive(proc) else None


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; a process that ends while it is looked at is not alive."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(procs: list[psutil.Process]) -> bool:
    return not [p for p in procs if alive(p)]


def assets(heimdex_cmd: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [*heimdex_cmd, "assets", "--json"], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def indexed_lines(lines: list[str], source: Path) -> list[str]:
    """Lines that report the file indexed by this run (not skipped as done already or by another run)."""
    return [
        line
        for line in lines
        if line.startswith("ok") and line.endswith(str(source)) and "(" not in line.split(str(source))[-1]
    ]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("two-runs-media"), CLIPS)


def test_two_index_runs_on_one_home_index_each_file_once(
    tmp_path: Path, clips: dict[str, Path], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    env = home_env(cli_env, tmp_path / "home")
    first = Run([*heimdex_cmd, "index", str(clips["quarry"]), str(clips["ferris"])], env)
    wait_for(lambda: (tmp_path / "home" / "pg" / "postmaster.pid").exists(), "the first run's database")
    second = Run(
        [*heimdex_cmd, "index", str(clips["ferris"]), str(clips["beacon"]), str(clips["quarry"])], env
    )
    assert first.finish() == 0, first.err[-2000:]
    assert second.finish() == 0, second.err[-2000:]
    lines = first.lines + second.lines
    for path in clips.values():
        assert len(indexed_lines(lines, path)) == 1, lines  # indexed by one run, exactly once
    for line in second.lines:  # what the second run did not index itself, it says why
        if line.startswith("wait"):
            assert "being indexed by heimdex index (pid" in line, line
    rows = assets(heimdex_cmd, env)
    assert sorted(a["source"] for a in rows) == sorted(str(p) for p in clips.values())
    assert all(a["status"] == "ready" and a["scenes"] > 0 for a in rows), rows
    wait_for(lambda: postmaster(tmp_path / "home") is None, "the embedded PostgreSQL to stop")


def test_a_file_another_run_holds_is_waited_for_then_indexed(
    engine: Engine, clips: dict[str, Path], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    """The test holds the file's claim, as a run that indexes it would: the CLI says whom it waits
    for, and when the claim is let go without the file being indexed, indexes it itself."""
    org = "waiting-room"
    claims = SourceClaims(engine.db.url)
    ref = AssetRef(org, "", str(clips["beacon"]), "")
    try:
        assert claims.try_claim(ref)
        run = Run([*heimdex_cmd, "index", str(clips["beacon"]), "--org", org], cli_env)
        wait_for(lambda: any(line.startswith("wait") for line in run.lines), "the run to say it waits")
        assert run.lines[0] == f"wait {clips['beacon']}  (being indexed by {claims.name})", run.lines
        assert run.proc.poll() is None  # still waiting
    finally:
        claims.close()
    assert run.finish() == 0, run.err[-2000:]
    assert len(indexed_lines(run.lines, clips["beacon"])) == 1, run.lines
    assert engine.search("hilltop beacon anniversary", org=org, k=1)[0]["source"] == str(clips["beacon"])


def cmdline(proc: psutil.Process) -> str:
    """A child's command line; "" for one that ended (a zombie not yet reaped, or gone)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def test_interrupted_run_leaves_no_process_and_the_next_run_finishes(
    tmp_path: Path, clips: dict[str, Path], cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    home = tmp_path / "home"
    # 5-s segments: the 11-s clips run through the segment worker processes.
    env = home_env(cli_env, home, HEIMDEX_SEGMENT_S="5")
    run = Run([*heimdex_cmd, "index", *map(str, clips.values())], env)
    cli = psutil.Process(run.proc.pid)
    workers = wait_for(lambda: [p for p in cli.children() if "spawn_main" in cmdline(p)], "segment workers")
    database = wait_for(lambda: postmaster(home), "the embedded PostgreSQL")
    descendants = cli.children(recursive=True)
    run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert run.finish() == 130, run.err[-2000:]
    assert "run the same command again to finish" in run.err
    wait_for(lambda: gone([*workers, *descendants, database]), "workers and PostgreSQL to exit", timeout=180)

    again = Run([*heimdex_cmd, "index", *map(str, clips.values())], env)
    assert again.finish() == 0, again.err[-2000:]
    for path in clips.values():  # each file indexed by exactly one of the two runs
        assert len(indexed_lines(run.lines + again.lines, path)) == 1, (run.lines, again.lines)
    rows = assets(heimdex_cmd, env)
    assert sorted(a["source"] for a in rows) == sorted(str(p) for p in clips.values())
    assert all(a["status"] == "ready" for a in rows), rows
    wait_for(lambda: postmaster(home) is None, "the embedded PostgreSQL to stop")


def test_serve_stopped_with_sigterm_leaves_no_postgres(
    tmp_path: Path, cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    home = tmp_path / "home"
    port = free_port()
    serve = Run([*heimdex_cmd, "serve", "--port", str(port)], home_env(cli_env, home))

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            assert serve.proc.poll() is None, serve.err
            return False

    wait_for(healthy, "heimdex serve to answer")
    database = postmaster(home)
    assert database is not None
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.finish(timeout=120) == 0, serve.err[-2000:]
    wait_for(lambda: gone([database]), "the embedded PostgreSQL to stop", timeout=180)
    assert os.path.exists(home / "pg")  # stopped, not deleted
