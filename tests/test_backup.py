"""Nothing lost on the embedded default: `heimdex backup` / `heimdex restore` (heimdex.embedded.backup).

A home is indexed, searched and backed up through the CLI (subprocesses, as a user runs it), wiped
and restored; searches, assets, thumbnails and the API secret must come back identical, and a later
`heimdex index` of the same files finds them already indexed. Then the refusals, the lock that keeps
a backup taken during an index commit whole (in-process, step by step), and backups taken while a
real `heimdex index` runs. Every test checks that no PostgreSQL is left running in its homes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from heimdex.adapters.local import LocalDerivedStore
from heimdex.core.storage import write_json
from heimdex.dev.samples import Segment
from heimdex.domain import AssetRef
from heimdex.embedded import backup
from heimdex.media.scenes import Scene
from heimdex.vectorstore import store
from heimdex.vectorstore.db import BACKUP_LOCK, Database, backup_fence, stop_embedded
from tests import waiting
from tests.conftest import CAPTION_CLIP, make_clips, settings_for

CLIPS = {
    "lighthouse": [
        Segment(6.0, speech="The lighthouse keeper repaired the lamp during the storm."),
        Segment(5.0, caption="WEATHER WARNING"),
    ],
    "chess": CAPTION_CLIP,
    # Indexed only in test_backups_taken_while_indexing_restore_whole.
    "market": [
        Segment(5.0, speech="Fresh bread is baked in the village every morning."),
        Segment(4.0, caption="MARKET DAY"),
    ],
}
QUERIES = ("lighthouse keeper repaired the lamp", "chess tournament", "weather warning")
TIMEOUT_S = 600


wait_for = partial(waiting.wait_for, timeout=120.0)


def no_server_left(home: Path) -> None:
    """Each CLI process stops the embedded server when it is the last to use it (pgserver's
    cleanup_mode "stop"); nothing may be left running once they have exited."""
    pid = home / "pg" / "postmaster.pid"
    wait_for(lambda: not pid.exists(), f"the PostgreSQL of {home} to stop", timeout=180)


@dataclass
class Home:
    home: Path
    env: dict[str, str]
    clips: dict[str, Path]
    file: Path  # the backup
    searches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    assets: list[dict[str, Any]] = field(default_factory=list)
    secret: bytes = b""
    backup_s: float = 0.0


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(HEIMDEX_HOME=str(home), HEIMDEX_WORKERS="3")
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "heimdex.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def search_all(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {q: json.loads(ok(cli(env, "search", q, "--json", "--k", "5")).stdout) for q in QUERIES}


def assets_of(env: dict[str, str]) -> list[dict[str, Any]]:
    assets: list[dict[str, Any]] = json.loads(ok(cli(env, "assets", "--json")).stdout)
    return assets


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """Two clips indexed into a fresh home, searched, and backed up."""
    work = tmp_path_factory.mktemp("backup")
    clips = make_clips(work / "clips", CLIPS)
    h = Home(home=work / "home", env=env_for(work / "home"), clips=clips, file=work / "home.backup")
    try:
        ok(cli(h.env, "index", str(clips["lighthouse"]), str(clips["chess"]), timeout=TIMEOUT_S))
        ok(cli(h.env, "token"))  # creates the home's API secret, which a backup must carry
        h.searches, h.assets = search_all(h.env), assets_of(h.env)
        h.secret = (h.home / "jwt_secret").read_bytes()
        assert all(h.searches.values()) and len(h.assets) == 2
        started = time.perf_counter()
        made = ok(cli(h.env, "backup", str(h.file)))
        h.backup_s = time.perf_counter() - started
        assert made.stdout.startswith("backed up 2 assets (2 ready)"), made.stdout
        no_server_left(h.home)
        yield h
    finally:
        stop_embedded(h.home / "pg")


def test_backup_file_holds_a_manifest_the_dump_and_the_derived_files(indexed: Home) -> None:
    manifest = backup.read_manifest(indexed.file)
    assert manifest["format"] == "heimdex-backup" and manifest["format_version"] == 1
    assert manifest["vector_dims"] == {"text": 384, "image": 512}
    assert manifest["schema_version"] >= 4 and manifest["postgresql"].startswith("18")
    assert manifest["models"]["text"] == ["st:all-MiniLM-L6-v2"]
    counts = manifest["counts"]
    assert counts["assets"] == counts["ready"] == 2 and counts["organisations"] == 1
    assert counts["scenes"] == sum(a["scenes"] for a in indexed.assets)
    assert manifest["missing_files"] == []
    with tarfile.open(indexed.file) as tar:
        names = tar.getnames()
    assert names[:3] == ["manifest.json", "database.dump", "jwt_secret"]
    derived = [n for n in names if n.startswith("derived/")]
    assert len(derived) == counts["derived_files"]
    thumbs = {h["thumbnail"] for hits in indexed.searches.values() for h in hits}
    assert {str(Path(t).relative_to(indexed.home)) for t in thumbs} <= set(derived)
    assert sum(n.startswith("derived/default/sidecars/") for n in derived) == 2
    assert oct(indexed.file.stat().st_mode & 0o777) == "0o600"


def test_restore_into_an_empty_home_gives_identical_results(indexed: Home) -> None:
    shutil.rmtree(indexed.home)
    indexed.home.mkdir()
    started = time.perf_counter()
    proc = ok(cli(indexed.env, "restore", str(indexed.file)))
    restore_s = time.perf_counter() - started
    assert proc.stdout.startswith("restored 2 assets (2 ready)"), proc.stdout
    assert search_all(indexed.env) == indexed.searches  # sources, times, scores, text, thumbnails, links
    for hits in indexed.searches.values():
        for hit in hits:
            assert Path(hit["thumbnail"]).is_file() and Path(hit["thumbnail"]).stat().st_size > 0
    assert assets_of(indexed.env) == indexed.assets
    assert (indexed.home / "jwt_secret").read_bytes() == indexed.secret
    again = ok(cli(indexed.env, "index", str(indexed.clips["lighthouse"]), str(indexed.clips["chess"])))
    assert again.stdout.count("unchanged, already indexed") == 2, again.stdout
    no_server_left(indexed.home)
    print(
        f"\nbackup/restore: {indexed.file.stat().st_size / 1024:.0f} KB, backup {indexed.backup_s:.1f}s,"
        f" restore {restore_s:.1f}s (CLI processes, start-up included)"
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_restore_refusals(indexed: Home, tmp_path: Path) -> None:
    # A home in use is refused without --force, and left as it was.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    busy_env = env_for(busy)
    one_line_error(cli(busy_env, "restore", str(indexed.file)), 64, "not empty", "--force")
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]

    # Files that are not Heimdex backups, into a home that does not exist yet: refused, nothing made.
    empty = tmp_path / "empty"
    empty_env = env_for(empty)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(random.Random(19).randbytes(100_000))
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(noise, arcname="noise.bin")
    for path in (noise, foreign, indexed.clips["chess"]):
        one_line_error(cli(empty_env, "restore", str(path)), 64, "not a Heimdex backup")
    one_line_error(cli(empty_env, "restore", str(tmp_path / "absent.tar")), 64, "no such backup file")
    assert not empty.exists()

    # A damaged backup (cut short) fails and leaves the empty home empty.
    cut = tmp_path / "cut.backup"
    cut.write_bytes(indexed.file.read_bytes()[: indexed.file.stat().st_size * 2 // 3])
    one_line_error(cli(empty_env, "restore", str(cut)), 2, "damaged")
    assert not empty.exists() or not any(empty.iterdir())

    # --force replaces the database and derived files of a home in use.
    ok(cli(busy_env, "restore", "--force", str(indexed.file)))
    query = QUERIES[0]
    hits = json.loads(ok(cli(busy_env, "search", query, "--json", "--k", "5")).stdout)
    strip = [{k: v for k, v in h.items() if k != "thumbnail"} for h in hits]
    assert strip == [{k: v for k, v in h.items() if k != "thumbnail"} for h in indexed.searches[query]]
    assert all(Path(h["thumbnail"]).is_file() and Path(h["thumbnail"]).is_relative_to(busy) for h in hits)
    assert (busy / "notes.txt").read_text() == "keep me"
    no_server_left(busy)
    no_server_left(empty)


def advisory_waiters(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted",
            (BACKUP_LOCK,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_backup_waits_for_an_index_commit_in_flight(tmp_path: Path) -> None:
    """The index stage writes the sidecar inside its fenced transaction; a backup that starts in the
    middle waits for the commit and then holds the new rows and the new sidecar together."""
    settings = settings_for(tmp_path / "home")
    db = Database(settings)
    try:
        derived = LocalDerivedStore(settings.home)
        ref = AssetRef("default", "a" * 24, "/archive/harbour.mp4", "1-1")
        thumb = ref.derived_key("thumbs/00000.jpg")
        derived.write_bytes(thumb, b"\xff\xd8 a keyframe", "image/jpeg")  # the shots stage, earlier
        write_json(derived, ref.sidecar_key, {"run": 1})  # a sidecar of an earlier run, no rows yet
        with db.org_tx("default") as conn:
            store.upsert_processing(conn, ref)
        in_transaction, commit = threading.Event(), threading.Event()

        def index_stage() -> None:
            with db.org_tx("default") as conn:
                backup_fence(conn)
                write_json(derived, ref.sidecar_key, {"run": 2})
                scene = Scene(0.0, 4.0, words=[{"w": "harbour", "s": 0.5, "e": 1.0}], thumb=thumb)
                store.replace_scenes(
                    conn,
                    ref,
                    [store.SceneRow(scene, None)],
                    duration=4.0,
                    sidecar=ref.sidecar_key,
                    text_model="test",
                    image_model=None,
                )
                in_transaction.set()
                assert commit.wait(120)

        result: dict[str, Any] = {}
        target = tmp_path / "mid.backup"

        def take() -> None:
            try:
                result.update(backup.backup(settings, target))
            except BaseException as exc:
                result["error"] = exc

        committer = threading.Thread(target=index_stage)
        taker = threading.Thread(target=take)
        committer.start()
        try:
            assert in_transaction.wait(60)
            taker.start()
            wait_for(lambda: advisory_waiters(db.url) == 1, "the backup to wait for the index commit")
            assert taker.is_alive() and not target.exists()
        finally:
            commit.set()
            committer.join(60)
            if taker.is_alive() or taker.ident is not None:
                taker.join(120)
        assert "error" not in result, result
        counts = result["counts"]
        assert (counts["ready"], counts["scenes"], result["missing_files"]) == (1, 1, [])
        with tarfile.open(target) as tar:
            sidecar = tar.extractfile(ref.sidecar_key)
            assert sidecar is not None and json.loads(sidecar.read()) == {"run": 2}
            assert thumb in tar.getnames()
    finally:
        db.close()
        stop_embedded(settings.pgdata)
    no_server_left(settings.home)


def test_backups_taken_while_indexing_restore_whole(indexed: Home, tmp_path: Path) -> None:
    """Two backups while `heimdex index` runs: one once the new clip's first stage output exists (it is
    `processing`), one once its sidecar exists (the index stage is inside its fenced transaction or has
    committed, so the backup waits for the commit if need be and must hold the clip ready). Each
    restores: restore checks the counts and that every thumbnail and sidecar a row names is on disk."""
    derived = indexed.home / "derived" / "default"
    known = {a["asset_id"] for a in assets_of(indexed.env)}

    def new_asset() -> str | None:
        fresh = [p.name for p in derived.iterdir() if p.name not in known and p.name != "sidecars"]
        return fresh[0] if fresh else None

    log = tmp_path / "index.log"
    backups: dict[str, Path] = {}
    with log.open("w") as out:
        indexer = subprocess.Popen(
            [sys.executable, "-m", "heimdex.cli", "index", str(indexed.clips["market"])],
            env=indexed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        asset_id = wait_for(new_asset, "the new clip's first stage output", timeout=TIMEOUT_S)
        backups["processing"] = tmp_path / "processing.backup"
        ok(cli(indexed.env, "backup", str(backups["processing"])))
        assert indexer.poll() is None, "the index finished before the first backup did"
        sidecar = derived / "sidecars" / f"{asset_id}.json"
        wait_for(sidecar.exists, "the new clip's sidecar", timeout=TIMEOUT_S)
        backups["ready"] = tmp_path / "ready.backup"
        ok(cli(indexed.env, "backup", str(backups["ready"])))
        indexer.wait(timeout=TIMEOUT_S)
    finally:
        if indexer.poll() is None:
            indexer.kill()
            indexer.wait()
    assert indexer.returncode == 0, log.read_text()[-3000:]
    no_server_left(indexed.home)
    market = str(indexed.clips["market"])
    for state, file in backups.items():
        home = tmp_path / f"restored-{state}"
        env = env_for(home)
        ok(cli(env, "restore", str(file)))
        assets = {a["source"]: a for a in assets_of(env)}
        assert [assets[a["source"]] for a in indexed.assets] == indexed.assets
        if state == "ready":
            assert assets[market]["status"] == "ready" and assets[market]["scenes"] > 0, assets[market]
        else:
            assert assets[market]["status"] in ("processing", "ready"), assets[market]
        no_server_left(home)
