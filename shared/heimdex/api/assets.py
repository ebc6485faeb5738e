"""/v1/assets: list (cursor pages, filters), one asset in full, its scenes, sidecar and captions,
delete and re-index. Another organisation's asset id answers exactly as a missing one (404)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_openapi3 import OpenAPI, Tag

from heimdex.api import errors
from heimdex.api.context import (
    BEARER,
    ApiContext,
    BadCursor,
    decode_cursor,
    dump,
    encode_cursor,
    error_responses,
    fingerprint,
    invalid,
    not_found,
    org,
)
from heimdex.api.models import (
    AssetDetail,
    AssetList,
    AssetPath,
    AssetsQuery,
    AssetSummary,
    Deleted,
    Error,
    Probe,
    Progress,
    Reindex,
    Scene,
    SceneList,
    Sidecar,
    StageInfo,
)
from heimdex.core import graph
from heimdex.domain import AssetRef, make_job_id
from heimdex.media import captions

ERRORS = error_responses(400, 401, 404, 503)
ASSETS = Tag(name="assets", description="What is indexed, and what became of it")


def _text(media_type: str, what: str) -> dict[str, Any]:
    return {"description": what, "content": {media_type: {"schema": {"type": "string"}}}}


def job_progress(engine: Any, org_id: str, row: dict[str, Any]) -> Progress | None:
    """A processing asset's job progress (None for one that is not processing, or has no job)."""
    if row["status"] != "processing":
        return None
    job_id = make_job_id(row["asset_id"])
    job = engine.jobs.get_by_id(job_id, org_id=org_id)
    if job is None or not isinstance(job.get("stages"), dict):
        return None
    done, total, running = graph.progress(job["stages"])
    return Progress(job_id=job_id, done=done, total=total, running=running)


def summary(row: dict[str, Any], progress: Progress | None = None) -> AssetSummary:
    return AssetSummary(
        source=row["source"],
        asset_id=row["asset_id"],
        status=row["status"],
        error=row["error"],
        duration=row["duration"],
        scenes=row["scenes"],
        skipped=row["skipped"] or {},
        lang=row.get("lang"),
        lang_note=row.get("lang_note"),
        indexed_at=row["updated_at"] if row["status"] != "processing" else None,
        progress=progress,
    )


def _stages(job: dict[str, Any] | None) -> dict[str, StageInfo]:
    out: dict[str, StageInfo] = {}
    for name, st in ((job or {}).get("stages") or {}).items():
        if not isinstance(st, dict):
            continue
        seconds = st.get("seconds")
        out[name] = StageInfo(
            status=str(st.get("status", "unknown")),
            attempts=st.get("attempts") if isinstance(st.get("attempts"), int) else None,
            started_at=str(st["started"]) if st.get("started") else None,
            finished_at=str(st["finished"]) if st.get("finished") else None,
            seconds=float(seconds) if isinstance(seconds, int | float) else None,
            error=st.get("error") if isinstance(st.get("error"), str) else None,
            note=st.get("note") if isinstance(st.get("note"), str) else None,
        )
    return out


def register(app: OpenAPI, ctx: ApiContext) -> None:
    engine = ctx.engine

    def find(asset_id: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = engine.asset(asset_id, org=org())
        return row

    @app.get("/v1/assets", tags=[ASSETS], security=BEARER, responses={200: AssetList, **ERRORS})
    def list_assets(query: AssetsQuery) -> Any:
        """The organisation's assets by source, a page at a time (`next_cursor`)."""
        fp = fingerprint("assets", query.status, query.source)
        after = None
        if query.cursor:
            try:
                doc = decode_cursor(query.cursor, fp)
                after = (str(doc["s"]), str(doc["a"]))
            except (BadCursor, KeyError) as exc:
                return invalid(
                    str(exc) if isinstance(exc, BadCursor) else "cursor is not one this API issued"
                )
        rows = engine.asset_page(
            org=org(),
            limit=query.limit + 1,
            after=after,
            status=query.status,
            source_prefix=query.source or None,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = (
            encode_cursor({"s": rows[-1]["source"], "a": rows[-1]["asset_id"], "f": fp}) if more else None
        )
        assets = [summary(r, job_progress(engine, org(), r)) for r in rows]
        return dump(AssetList(assets=assets, next_cursor=cursor))

    @app.get("/v1/assets/<asset_id>", tags=[ASSETS], security=BEARER, responses={200: AssetDetail, **ERRORS})
    def get_asset(path: AssetPath) -> Any:
        """One asset: probe metadata, per-stage status and timings, scene count, models used."""
        row = find(path.asset_id)
        if row is None:
            return not_found()
        doc = engine.read_sidecar(row) if row["status"] == "ready" else None
        ref = AssetRef(org(), row["asset_id"], row["source"], row["version"])
        job = engine.jobs.get(ref)
        media = (doc or {}).get("media")
        models = (doc or {}).get("models") or {"text": row["text_model"], "image": row["image_model"]}
        language = ((doc or {}).get("transcript") or {}).get("language")
        return dump(
            AssetDetail(
                **summary(row, job_progress(engine, org(), row)).model_dump(),
                version=row["version"],
                created_at=row["created_at"],
                media=Probe.model_validate(media) if isinstance(media, dict) else None,
                stages=_stages(job),
                models=models,
                language=language if isinstance(language, str) else None,
                media_url=ctx.media_url(org(), row["asset_id"]),
                job_id=make_job_id(row["asset_id"]),
            )
        )

    @app.get(
        "/v1/assets/<asset_id>/scenes", tags=[ASSETS], security=BEARER, responses={200: SceneList, **ERRORS}
    )
    def get_scenes(path: AssetPath) -> Any:
        """The asset's timeline: each scene's start, end, transcript, on-screen text and thumbnail."""
        if find(path.asset_id) is None:
            return not_found()
        media = ctx.media_url(org(), path.asset_id)
        scenes = [
            Scene(
                index=s["idx"],
                start=round(s["start_s"], 3),
                end=round(s["end_s"], 3),
                transcript=s["transcript"],
                ocr_text=s["ocr_text"],
                lang=s.get("lang"),
                thumbnail_url=ctx.thumbnail_url(org(), path.asset_id, s["idx"], s["thumbnail"]),
                media_url=media,
                link=ctx.link(media, s["start_s"]),
            )
            for s in engine.asset_scenes(path.asset_id, org=org())
        ]
        return dump(SceneList(asset_id=path.asset_id, scenes=scenes))

    @app.get(
        "/v1/assets/<asset_id>/sidecar", tags=[ASSETS], security=BEARER, responses={200: Sidecar, **ERRORS}
    )
    def get_sidecar(path: AssetPath) -> Any:
        """The asset's sidecar document (schemas/sidecar.v1.json)."""
        row = find(path.asset_id)
        doc = engine.read_sidecar(row) if row else None
        if doc is None:
            return not_found("indexed asset")
        return Response(Sidecar.model_validate(doc).model_dump_json(), mimetype="application/json")

    def words_of(asset_id: str) -> tuple[list[Any], str | None] | None:
        row = find(asset_id)
        doc = engine.read_sidecar(row) if row else None
        if doc is None:
            return None
        transcript = doc.get("transcript") or {}
        language = transcript.get("language")
        return list(transcript.get("words") or []), language if isinstance(language, str) else None

    @app.get(
        "/v1/assets/<asset_id>/captions.vtt",
        tags=[ASSETS],
        security=BEARER,
        responses={200: _text("text/vtt", "WebVTT captions"), **ERRORS},
    )
    def captions_vtt(path: AssetPath) -> Any:
        """WebVTT captions from the word timestamps (2 lines of 42 characters, 1-7 s cues)."""
        found = words_of(path.asset_id)
        if found is None:
            return not_found("indexed asset")
        words, language = found
        body = captions.webvtt(captions.cues(words), language=language)
        return Response(body, mimetype="text/vtt", content_type="text/vtt; charset=utf-8")

    @app.get(
        "/v1/assets/<asset_id>/captions.srt",
        tags=[ASSETS],
        security=BEARER,
        responses={200: _text("application/x-subrip", "SubRip captions"), **ERRORS},
    )
    def captions_srt(path: AssetPath) -> Any:
        """SubRip captions from the word timestamps."""
        found = words_of(path.asset_id)
        if found is None:
            return not_found("indexed asset")
        body = captions.srt(captions.cues(found[0]))
        return Response(body, content_type="application/x-subrip; charset=utf-8")

    @app.delete("/v1/assets/<asset_id>", tags=[ASSETS], security=BEARER, responses={200: Deleted, **ERRORS})
    def delete_asset(path: AssetPath) -> Any:
        """Remove an asset from the index: its rows, derived files and thumbnails. The original stays;
        this version of it is not indexed again (by a folder run, bucket event or Drive change) until
        it changes."""
        row = engine.delete_asset(path.asset_id, org=org())
        if row is None:
            return not_found()
        return dump(Deleted(asset_id=row["asset_id"], deleted=True, source=row["source"]))

    @app.post(
        "/v1/assets/<asset_id>/reindex",
        tags=[ASSETS],
        security=BEARER,
        responses={202: Reindex, 409: Error, **ERRORS},
    )
    def reindex(path: AssetPath) -> Any:
        """Index the asset again from its original (new models, a failed run); 202, then poll the job.
        Embedded, the asset keeps its id; in the cloud the run is a new asset of the same source (the
        answer names it), which replaces this one when it is indexed."""
        row = find(path.asset_id)
        if row is None:
            return not_found()
        if row["status"] == "processing":
            return errors.error(409, "conflict", "the asset is being indexed now")
        ref = AssetRef(org(), row["asset_id"], row["source"], row["version"])
        run = ctx.reindex(ref)
        return dump(Reindex(asset_id=run.asset_id, job_id=run.job_id, status="queued"), 202)

    del list_assets, get_asset, get_scenes, get_sidecar, captions_vtt, captions_srt, delete_asset, reindex
