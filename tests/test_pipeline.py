"""The declared graph and the job store's exactly-once fan-in, against the real PostgreSQL."""

from __future__ import annotations

import functools
import operator
from concurrent.futures import ThreadPoolExecutor

from heimdex.core.graph import PIPELINE, STAGES, ready_stages
from heimdex.domain import AssetRef, make_asset_id
from heimdex.embedded.engine import Engine


def test_graph_is_acyclic_and_ends_in_index() -> None:
    seen: set[str] = set()
    for stage in PIPELINE:
        assert set(stage.needs) <= seen, f"{stage.name} needs a later stage"
        seen.add(stage.name)
    assert PIPELINE[-1].name == "index" and set(STAGES["index"].needs) == {"asr", "ocr", "vision", "faces"}


def test_ready_stages_follow_the_graph() -> None:
    assert ready_stages({}) == ["probe"]
    assert ready_stages({"probe": {"status": "done"}}) == ["asr", "shots"]
    states = {n: {"status": "done"} for n in ("probe", "asr", "shots", "ocr")}
    assert ready_stages(states) == ["vision", "faces"]
    states["vision"] = {"status": "skipped"}
    assert ready_stages(states) == ["faces"]
    states["faces"] = {"status": "skipped"}
    assert ready_stages(states) == ["index"]


def _ref(org: str, name: str) -> AssetRef:
    return AssetRef(org, make_asset_id(org, name, "v1"), name, "v1")


def test_fan_in_is_enqueued_exactly_once_under_concurrency(engine: Engine) -> None:
    jobs = engine.jobs
    for trial in range(5):
        ref = _ref("fanin", f"/fanin/{trial}.mp4")
        assert jobs.create(ref)
        for stage in ("probe", "shots"):
            jobs.stage_started(ref, stage)
            jobs.stage_finished(ref, stage, status="done", seconds=0.1)
        for stage in ("asr", "ocr", "vision", "faces"):
            jobs.stage_started(ref, stage)
        with ThreadPoolExecutor(4) as pool:
            enqueued = list(
                pool.map(
                    lambda s, r=ref: jobs.stage_finished(r, s, status="done", seconds=0.1),
                    ["asr", "ocr", "vision", "faces"],
                )
            )
        assert sorted(functools.reduce(operator.iadd, enqueued, [])) == ["index"]
        # A duplicate delivery of a finished stage enqueues nothing.
        assert jobs.stage_finished(ref, "asr", status="done", seconds=0.1) == []


def test_existing_job_is_not_created_twice(engine: Engine) -> None:
    ref = _ref("fanin", "/fanin/dup.mp4")
    assert engine.jobs.create(ref)
    assert not engine.jobs.create(ref)
    assert engine.jobs.create(ref, restart=True)


def test_failure_is_terminal_and_visible(engine: Engine) -> None:
    ref = _ref("fanin", "/fanin/bad.mp4")
    engine.jobs.create(ref)
    engine.jobs.job_failed(ref, "probe", "no video stream (audio only)")
    job = engine.jobs.get(ref)
    assert job is not None and job["status"] == "failed" and "audio only" in job["error"]
    assert engine.jobs.stage_finished(ref, "probe", status="done", seconds=0.0) == []
    assets = {a["source"]: a for a in engine.assets(org="fanin")}
    assert assets["/fanin/bad.mp4"]["status"] == "failed"


def test_check_delivery_judges_each_delivery_against_the_job() -> None:
    from heimdex.core.graph import check_delivery

    assert check_delivery(None, "probe").verdict == "ignored"
    for status in ("ready", "failed"):
        assert check_delivery({"status": status, "stages": {}}, "probe").verdict == "duplicate"
    running = {
        "status": "running",
        "stages": {
            "probe": {"status": "done"},
            "asr": {"status": "running"},
            "shots": {"status": "done"},
            "ocr": {"status": "queued"},
            "vision": {"status": "queued"},
            "faces": {"status": "queued"},
        },
    }
    assert check_delivery(running, "asr").verdict == "run"  # a redelivery of a killed attempt runs
    assert check_delivery(running, "ocr").verdict == "run"
    early = check_delivery(running, "index")
    assert early.verdict == "early" and "asr, ocr, vision, faces" in early.reason
    # shots finished, ocr and vision recorded as queued: a redelivery of shots re-enqueues them
    again = check_delivery(running, "shots")
    assert again.verdict == "duplicate" and again.next == ("ocr", "vision", "faces")
    running["stages"]["ocr"] = {"status": "running"}
    assert check_delivery(running, "shots").next == ("vision", "faces")  # a started stage is not re-enqueued
    assert check_delivery(running, "probe").next == ()  # asr running, shots done: nothing to redo
