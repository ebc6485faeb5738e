"""Ingest and removal for remote sources (bucket events, Drive changes, S3): shared by the functions.

Delivery is at least once, so ingest is idempotent twice over: an event id is remembered (first
delivery wins), and a job is created only if none exists for hash(org, source, version). A new
version of a source (an overwrite) is a new asset; its index stage replaces the old version's rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from heimdex.core.dispatch import Dispatcher
from heimdex.core.graph import FIRST
from heimdex.domain import VIDEO_EXTENSIONS, AssetRef, make_asset_id, validate_org
from heimdex.services import Services
from heimdex.vectorstore import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    status: Literal["queued", "duplicate", "rejected"]
    reason: str | None = None
    ref: AssetRef | None = None


def looks_like_video(name: str, content_type: str | None) -> bool:
    if content_type and content_type.split(";")[0].strip().lower().startswith("video/"):
        return True
    return PurePosixPath(name).suffix.lower() in VIDEO_EXTENSIONS


def ingest(
    engine: Services,
    dispatcher: Dispatcher,
    *,
    org_id: str,
    source: str,
    version: str,
    size: int,
    name: str,
    content_type: str | None,
) -> IngestResult:
    try:
        validate_org(org_id)
    except ValueError as exc:
        return IngestResult("rejected", str(exc))
    if not looks_like_video(name, content_type):
        return IngestResult("rejected", f"not a video: {name} ({content_type or 'no content type'})")
    if size <= 0:
        return IngestResult("rejected", "empty object")
    if size > engine.settings.max_file_bytes:
        return IngestResult("rejected", f"{size} bytes is over the limit of {engine.settings.max_file_bytes}")
    ref = AssetRef(org_id, make_asset_id(org_id, source, version), source, version)
    if engine.is_deleted(source, version, org=org_id):
        # DELETE /v1/assets/{id}: this version stays out of the index until the source changes.
        return IngestResult("duplicate", "this version was deleted from the index", ref)
    if not engine.jobs.create(ref):
        job = engine.jobs.get(ref)
        first = (job or {}).get("stages", {}).get(FIRST, {})
        if job and job.get("status") == "running" and first.get("status") == "queued":
            # The job was made but its first task may never have been (a crash in between, and the
            # event is delivered again): enqueue it again; the task name makes this idempotent.
            dispatcher.enqueue(ref, FIRST)
        return IngestResult("duplicate", "a job for this version exists", ref)
    dispatcher.enqueue(ref, FIRST)
    log.info("ingested", extra={"job": ref.job_id, "source": source, "version": version})
    return IngestResult("queued", None, ref)


def remove(engine: Services, *, org_id: str, source: str, version: str | None = None) -> list[str]:
    """Delete a source (one version of it, or all) from the index and its derived files."""
    with engine.db.org_tx(org_id) as conn:
        removed = store.delete_source(conn, source, version)
    for asset_id in removed:
        engine.derived.delete_prefix(f"derived/{org_id}/{asset_id}/")
        engine.derived.delete_prefix(f"derived/{org_id}/sidecars/{asset_id}.json")
    log.info("removed", extra={"source": source, "version": version, "assets": removed})
    return removed
