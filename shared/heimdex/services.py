"""What both runtimes build from settings: the adapters (database, models, blob stores, job store)
and the queries the HTTP API and the CLI answer. The embedded runtime adds indexing on top
(`heimdex.embedded.engine.Engine`); the cloud's functions and stage services use this as it is.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from heimdex.adapters import build_derived, build_jobs
from heimdex.adapters.sources import RoutingSourceStore
from heimdex.config import Settings
from heimdex.core.context import StageContext
from heimdex.core.storage import read_json
from heimdex.core.sweep import Stall
from heimdex.domain import AssetRef, validate_org
from heimdex.models import Models, ModelUnavailable
from heimdex.vectorstore import assets as asset_sql
from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore import store
from heimdex.vectorstore.db import Database


def absolute_path(raw: str) -> Path:
    """The source name of a local path: absolute and without `.`/`..` parts, so that `dir/sub/../a.mp4`
    and `dir/a.mp4` are one source (Path.absolute() keeps the `..`)."""
    return Path(os.path.normpath(Path(raw).expanduser().absolute()))


def deep_link(source: str, start: float) -> str:
    """A link that opens the source at the scene (media fragment `#t=`)."""
    base = Path(source).as_uri() if "://" not in source else source
    return f"{base}#t={start:.1f}"


class Services:
    """Everything a process of Heimdex needs, with adapters chosen by settings: local files and the
    embedded PostgreSQL by default; GCS and Firestore in the cloud."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("OMP_NUM_THREADS", str(self.settings.torch_threads))
        self.db = Database(self.settings)
        self.models = Models(self.settings)
        self.derived = build_derived(self.settings)
        self.sources = RoutingSourceStore(self.settings)
        self.jobs = build_jobs(self.settings, self.db)

    def context(self, ref: AssetRef) -> StageContext:
        return StageContext(
            ref=ref,
            settings=self.settings,
            derived=self.derived,
            sources=self.sources.for_org(ref.org_id),  # Drive: the organisation's own credentials
            models=self.models,
            db=self.db,
        )

    def sweep(self, now: datetime | None = None) -> list[Stall]:
        """Fail the jobs, of every organisation, that stalled by the time rule of `heimdex.core.sweep`
        (per-stage deadlines from settings); returns them. The scheduled `/sweep` of the cloud calls
        this; the embedded engine also respects the files a live `heimdex index` run holds."""
        return self.jobs.sweep(now or datetime.now(UTC), self.settings.stage_deadlines())

    # -- queries ----------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        org: str | None = None,
        k: int = 10,
        source: str | None = None,
        asset: str | None = None,
        kind: search_sql.SearchKind | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        offset: int = 0,
        lang: str | None = None,
    ) -> list[dict[str, Any]]:
        org = validate_org(org or self.settings.org)
        text_vec = self.models.embed_query(query)
        image_vec, image_model = self._clip_query(query)
        with self.db.org_tx(org) as conn:
            rows = search_sql.search(
                conn,
                query,
                text_vec=text_vec,
                text_model=self.models.text_name,
                image_vec=image_vec,
                image_model=image_model,
                k=k,
                source=source,
                ef_search=self.settings.search_ef_search,
                exact_max_rows=self.settings.search_exact_max_rows,
                asset=asset,
                kind=kind,
                after=after,
                before=before,
                offset=offset,
                lang=lang,
            )
        return [self._hit(r) for r in rows]

    def _clip_query(self, query: str) -> tuple[np.ndarray | None, str | None]:
        try:
            clip = self.models.clip()
        except ModelUnavailable:
            return None, None  # the image model is missing: text and keyword ranks still answer
        if clip is None:
            return None, None
        import torch

        with torch.inference_mode():
            vec = clip.model.encode_text(clip.tokenizer([query]))
            vec = torch.nn.functional.normalize(vec.float(), dim=-1)[0].numpy()
        return vec.astype(np.float32), clip.name

    def _hit(self, row: dict[str, Any]) -> dict[str, Any]:
        text = " ".join(t for t in (row["transcript"], row["ocr_text"]) if t)
        return {
            "source": row["source"],
            "asset_id": row["asset_id"],
            "scene": row["idx"],
            "start": round(row["start_s"], 2),
            "end": round(row["end_s"], 2),
            "score": round(float(row["score"]), 6),
            "text": text,
            "lang": row["lang"],
            "thumbnail": self.derived.url(row["thumbnail"]) if row["thumbnail"] else None,
            "link": deep_link(row["source"], row["start_s"]),
        }

    def assets(self, *, org: str | None = None) -> list[dict[str, Any]]:
        with self.db.org_tx(validate_org(org or self.settings.org)) as conn:
            rows = store.list_assets(conn)
        return [
            {
                "source": r["source"],
                "asset_id": r["asset_id"],
                "status": r["status"],
                "error": r["error"],
                "duration": r["duration"],
                "scenes": r["scenes"],
                "skipped": r["skipped"] or {},  # signal -> why it was not indexed
                "lang": r["lang"],  # the language most of its speech is in
                "lang_note": r["lang_note"],  # an English-only model heard speech that may not be English
            }
            for r in rows
        ]

    def sidecar(self, source_or_id: str, *, org: str | None = None) -> dict[str, Any] | None:
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            row = store.get_asset(conn, source_or_id)
            if row is None:
                matches = store.find_assets(conn, str(absolute_path(source_or_id)))
                row = matches[0] if matches else None
        if row is None or not row["sidecar"]:
            return None
        doc: dict[str, Any] = read_json(self.derived, row["sidecar"])
        return doc

    # -- the asset API (issue 14): every query inside the caller's organisation ----------------------

    def asset_page(
        self,
        *,
        org: str,
        limit: int,
        after: tuple[str, str] | None = None,
        status: str | None = None,
        source_prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.page_assets(
                conn, limit=limit, after=after, status=status, source_prefix=source_prefix
            )

    def asset(self, asset_id: str, *, org: str) -> dict[str, Any] | None:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.get(conn, asset_id)

    def asset_scenes(self, asset_id: str, *, org: str) -> list[dict[str, Any]]:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.scenes(conn, asset_id)

    def scene(self, asset_id: str, idx: int, *, org: str) -> dict[str, Any] | None:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.scene(conn, asset_id, idx)

    def read_sidecar(self, row: dict[str, Any]) -> dict[str, Any] | None:
        if not row.get("sidecar"):
            return None
        doc: dict[str, Any] = read_json(self.derived, row["sidecar"])
        return doc

    def frame_rate(self, asset_id: str, *, org: str) -> float | None:
        """The asset's video frame rate, from its sidecar's probe (None if unknown)."""
        row = self.asset(asset_id, org=org)
        doc = self.read_sidecar(row) if row else None
        fps = (((doc or {}).get("media") or {}).get("video") or {}).get("fps")
        return float(fps) if isinstance(fps, int | float) and fps > 0 else None

    def resolve_assets(self, source_or_id: str, *, org: str) -> list[dict[str, Any]]:
        """The assets an argument names: an asset id, else every version of a source (a path is
        made absolute as `heimdex index` stores it)."""
        with self.db.org_tx(validate_org(org)) as conn:
            row = asset_sql.get(conn, source_or_id)
            if row is not None:
                return [row]
            found = store.find_assets(conn, source_or_id)
            if not found and "://" not in source_or_id:
                found = store.find_assets(conn, str(absolute_path(source_or_id)))
            return found

    def delete_asset(self, asset_id: str, *, org: str) -> dict[str, Any] | None:
        """Delete an asset's rows, derived files and thumbnails (the original stays) and remember the
        version as deleted, so that ingest does not bring it back until the source changes."""
        org = validate_org(org)
        with self.db.org_tx(org) as conn:
            row = asset_sql.delete(conn, org, asset_id)
        if row is not None:
            self.derived.delete_prefix(f"derived/{org}/{asset_id}/")
            self.derived.delete_prefix(f"derived/{org}/sidecars/{asset_id}.json")
        return row

    def is_deleted(self, source: str, version: str, *, org: str) -> bool:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.is_deleted(conn, source, version)

    def forget_deleted(self, source: str, version: str, *, org: str) -> None:
        with self.db.org_tx(validate_org(org)) as conn:
            asset_sql.forget_deleted(conn, source, version)

    def create_upload(self, upload: dict[str, Any], *, org: str) -> tuple[dict[str, Any], bool]:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.create_upload(conn, org, upload)

    def upload(self, upload_id: str, *, org: str) -> dict[str, Any] | None:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.get_upload(conn, upload_id)

    def claim_upload(self, upload_id: str, *, org: str) -> bool:
        with self.db.org_tx(validate_org(org)) as conn:
            return asset_sql.claim_upload(conn, upload_id)

    def update_upload(self, upload_id: str, *, org: str, **fields: Any) -> None:
        with self.db.org_tx(validate_org(org)) as conn:
            asset_sql.update_upload(conn, upload_id, **fields)

    def signed_upload_url(
        self, source: str, content_type: str, ttl_s: int, *, resumable: bool = False
    ) -> str:
        """A V4 signed URL to upload `source` (gs://): PUT the bytes with this content type; or, with
        `resumable`, POST with `x-goog-resumable: start` and PUT the bytes to the session URI it
        answers (Location), in as many pieces as needed."""
        from heimdex.adapters.gcs import signed_url, storage_client

        client = storage_client(self.settings.project)
        if resumable:
            headers = {"x-goog-resumable": "start"}
            return signed_url(
                client, source, ttl_s, method="POST", content_type=content_type, headers=headers
            )
        return signed_url(client, source, ttl_s, method="PUT", content_type=content_type)

    def signed_source_url(self, source: str, ttl_s: int) -> str | None:
        """A short-lived URL of a bucket source that a browser can load (V4 signed for gs://,
        presigned for s3://); None for sources the API streams itself (files, Drive)."""
        if source.startswith("gs://"):
            from heimdex.adapters.gcs import signed_url, storage_client

            return signed_url(storage_client(self.settings.project), source, ttl_s)
        if source.startswith("s3://"):
            from heimdex.adapters.s3 import presigned_url, s3_client

            return presigned_url(s3_client(self.settings.s3_endpoint_url), source, ttl_s)
        return None

    def close(self) -> None:
        self.db.close()
