"""The stage service: the HTTP entry point of one pipeline stage (a Cloud Run service per stage, all
built from containers/Dockerfile; a local process in dev).

Cloud Tasks POSTs `{org_id, asset_id, source, version}`, plus `part` for a segment of long media.
The stage runs through the shared executor; the tasks it unlocks are enqueued from the declared
graph. Responses tell Cloud Tasks what to do: 2xx for done, skipped or failed for good (no retry),
and for a delivery with nothing to do (a duplicate, a job that is not this organisation's); 503 to
retry later (an error, or a task that came before the tasks it needs finished). See
docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from flask import Flask, jsonify, request

from heimdex import logs
from heimdex.adapters.cloud_tasks import CloudTasksDispatcher, part_from_payload, ref_from_payload
from heimdex.api import errors
from heimdex.api.auth import AuthError, bearer_token, verify_google_id_token
from heimdex.config import Settings
from heimdex.core.executor import run_stage
from heimdex.core.graph import STAGES, parse_task_key, task_key
from heimdex.domain import make_asset_id
from heimdex.services import Services

log = logging.getLogger(__name__)
MAX_TASK_BYTES = 64 * 1024  # a task is {org_id, asset_id, source, version, part}


def verify_task_token(header: str | None, audience: str) -> None:
    """Cloud Tasks (and Cloud Scheduler) sign an OIDC token for the invoker account; refuse anything else."""
    try:
        verify_google_id_token(bearer_token(header), audience)
    except AuthError as exc:
        raise PermissionError(f"OIDC token refused: {exc}") from exc


def create_stage_app(stage: str, engine: Services, dispatcher: Any) -> Flask:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    app = Flask(f"heimdex-{stage}")
    app.config["MAX_CONTENT_LENGTH"] = MAX_TASK_BYTES
    errors.install(app.errorhandler)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "stage": stage}

    @app.post("/")
    def run() -> Any:
        if engine.settings.verify_task_tokens:
            try:
                verify_task_token(request.headers.get("Authorization"), dispatcher.stage_url(stage))
            except PermissionError as exc:
                return errors.error(401, "unauthorized", str(exc))
        payload = request.get_json(silent=True)
        try:
            ref = ref_from_payload(payload or {})
            key = task_key(stage, part_from_payload(payload or {}))
            parse_task_key(key)  # a part of an unsegmented stage is no task
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed task: drop, don't retry (4xx other than 429).
            return errors.error(400, "invalid_request", f"bad task payload: {exc}")
        if ref.asset_id != make_asset_id(ref.org_id, ref.source, ref.version):
            # The asset id binds organisation, source and version: a payload that names one
            # organisation with another's asset (or source) reaches no job and touches nothing.
            mismatch = "asset id does not match the payload"
            return jsonify({"stage": key, "status": "ignored", "error": mismatch}), 200
        outcome = run_stage(engine.context(ref), engine.jobs, key, max_attempts=engine.settings.max_attempts)
        for nxt in outcome.next:
            dispatcher.enqueue(ref, nxt)
        body: dict[str, Any] = {
            "stage": key,
            "job": ref.job_id,
            "status": outcome.status,
            "next": outcome.next,
            "error": outcome.error,
        }
        return jsonify(body), 503 if outcome.status == "retry" else 200

    return app


EXIT_CONFIG = 64  # a stage that cannot work at all: the service does not start (a failed revision)


def preload(stage: str, engine: Services) -> None:
    """Check the stage's model settings, then load its model so the first task does not pay for it.

    A missing model of an optional stage is logged once here, and every task of it is then recorded
    `skipped` with the reason (the asset is indexed without that signal); a missing text model
    stops the index service, since nothing could be indexed."""
    problems = engine.models.check([stage])
    for problem in problems:
        log.error(str(problem), extra={"stage": stage, "setting": problem.setting, "fatal": problem.fatal})
    if any(p.fatal for p in problems):
        raise SystemExit(EXIT_CONFIG)
    if problems:
        return
    if stage == "faces" and engine.settings.faces == "off":
        return  # every task is skipped (HEIMDEX_FACES=off): nothing to load
    if loader := STAGES[stage].preload:  # declared with the stage (heimdex.core.graph)
        getattr(engine.models, loader)()


def serve(stage: str, host: str, port: int) -> None:
    """Load the stage's model, then serve tasks (Cloud Run: host 0.0.0.0, port from $PORT)."""
    logs.setup()
    import waitress

    engine = Services(Settings())
    preload(stage, engine)
    app = create_stage_app(stage, engine, CloudTasksDispatcher(engine.settings))
    waitress.serve(app, host=host, port=port, threads=2, ident=f"heimdex-{stage}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve one Heimdex pipeline stage over HTTP.")
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    serve(args.stage, args.host, args.port)


if __name__ == "__main__":
    main()
