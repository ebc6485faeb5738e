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
        lang: str | None = None,
    ) -> list[dict[str, Any]]:
        org = validate_org(org or self.settings.org)
        text_vec = self.models.embed_texts([query])[0].astype(np.float32)
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

    def asset_language(self, asset_id: str, *, org: str | None = None) -> str | None:
        """The language most of an asset's speech is in (ISO 639-1; None without speech or asset):
        what captions declare (`<track srclang>`, the VTT header's Language)."""
        with self.db.org_tx(validate_org(org or self.settings.org)) as conn:
            return store.asset_language(conn, asset_id)

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

    def close(self) -> None:
        self.db.close()
