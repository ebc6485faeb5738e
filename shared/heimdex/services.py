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
from heimdex.core.storage import read_json, write_json
from heimdex.core.sweep import Stall
from heimdex.domain import AssetRef, validate_org
from heimdex.models import Models, ModelUnavailable
from heimdex.vectorstore import assets as asset_sql
from heimdex.vectorstore import people as people_store
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


MAX_NAME_CHARS = 200


def clean_name(name: str | None) -> str | None:
    """A person's name on one line without control characters or lone surrogates (which no
    database text holds), or None (unnamed); ValueError if longer than MAX_NAME_CHARS."""
    if name is None:
        return None
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a name is at most {MAX_NAME_CHARS} characters")
    return name or None


def decode_photo(data: bytes, number: int) -> np.ndarray:
    """An RGB array of an uploaded photo; ValueError for anything that is not an image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > 50_000_000:
                raise ValueError(f"photo {number}: larger than 50 megapixels")
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"photo {number}: not an image ({exc})") from None


def erase_face_outputs(derived: Any, thumbs: list[str]) -> None:
    """Delete forgotten face crops, and drop their tracks from the faces stage's outputs (which
    hold the embeddings) in the same folder: `.../thumbs/faces/[NNN-]NNNNN.jpg` ->
    `.../faces.json` or `.../faces_N.json`."""
    outputs: dict[str, set[str]] = {}
    for key in thumbs:
        folder, _, name = key.rpartition("/thumbs/faces/")
        part = name.split("-")[0] if "-" in name else None
        out = f"{folder}/faces{'' if part is None else f'_{int(part)}'}.json"
        outputs.setdefault(out, set()).add(key)
        derived.delete_prefix(key)
    for out, keys in outputs.items():
        if not derived.exists(out):
            continue
        doc = read_json(derived, out)
        doc["tracks"] = [t for t in doc.get("tracks", []) if t.get("thumb") not in keys]
        write_json(derived, out, doc)


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
        people: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Top-k scenes for a query; with `people` (names or ids; all must appear), only scenes
        where they are seen, and with no query those scenes by time (`search_people`)."""
        org = validate_org(org or self.settings.org)
        if people:
            return self.search_people(
                query,
                people,
                org=org,
                k=k,
                source=source,
                asset=asset,
                kind=kind,
                after=after,
                before=before,
                offset=offset,
                lang=lang,
            )
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
            seen = people_store.people_in_scenes(conn, org, [(r["asset_id"], r["idx"]) for r in rows])
        return [self._hit(r) | {"people": seen.get((r["asset_id"], r["idx"]), [])} for r in rows]

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

    # -- people (heimdex.vectorstore.people; README "People and faces") -----------------------------

    def search_people(
        self,
        query: str,
        people: list[str],
        *,
        org: str,
        k: int = 10,
        source: str | None = None,
        asset: str | None = None,
        kind: search_sql.SearchKind | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        offset: int = 0,
        lang: str | None = None,
    ) -> list[dict[str, Any]]:
        """Scenes where every named person appears (a name may name several people: any of them);
        ranked by the query, or by time without one. The search filters hold as in `search`.
        NoSuchPerson for a name or id not known."""
        query = query.strip()
        text_vec = self.models.embed_query(query) if query else None
        image_vec, image_model = self._clip_query(query) if query else (None, None)
        with self.db.org_tx(org) as conn:
            groups = [people_store.resolve(conn, org, ref) for ref in people]
            rows = people_store.search_people(
                conn,
                org,
                groups,
                k=k,
                offset=offset,
                filters=people_store.Filters(
                    source=source, asset=asset, kind=kind, after=after, before=before, lang=lang
                ),
                query=query,
                or_q=search_sql.or_query(query),
                text_vec=text_vec,
                text_model=self.models.text_name,
                image_vec=image_vec,
                image_model=image_model,
                rrf_k=search_sql.RRF_K,
            )
            seen = people_store.people_in_scenes(conn, org, [(r["asset_id"], r["idx"]) for r in rows])
        return [self._hit(r) | {"people": seen.get((r["asset_id"], r["idx"]), [])} for r in rows]

    def _person(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(row["id"]),
            "name": row["name"],
            "faces": int(row["faces"]),
            "assets": int(row["assets"]),
            "cover": self.derived.url(row["cover"]) if row["cover"] else None,
            # The cover crop's face track and asset: what a signed face URL names (heimdex.api.people).
            "cover_face": int(row["cover_face"]) if row["cover"] and row["cover_asset"] else None,
            "cover_asset": row["cover_asset"] if row["cover"] else None,
        }

    def people(self, *, org: str | None = None) -> list[dict[str, Any]]:
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            return [self._person(r) for r in people_store.list_people(conn, org)]

    def person(self, person: int, *, org: str | None = None) -> dict[str, Any]:
        """One person and where they appear (asset, source, start, end, face thumbnail)."""
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            row = people_store.get_person(conn, org, person)
            seen = people_store.appearances(conn, org, person)
        return self._person(row) | {
            "appearances": [
                {
                    "face_id": int(a["face_id"]),
                    "asset_id": a["asset_id"],
                    "source": a["source"],
                    "start": round(a["start_s"], 2),
                    "end": round(a["end_s"], 2),
                    "thumbnail": self.derived.url(a["thumbnail"]) if a["thumbnail"] else None,
                    "link": deep_link(a["source"], a["start_s"]),
                }
                for a in seen
            ]
        }

    def face_crop(self, asset_id: str, face: int, *, org: str) -> bytes | None:
        """A face track's crop (JPEG) if it is the organisation's and the asset's, else None."""
        org = validate_org(org)
        with self.db.org_tx(org) as conn:
            key = people_store.face_thumbnail(conn, org, asset_id, face)
        return self.derived.read_bytes(key) if key and self.derived.exists(key) else None

    def name_person(self, person: int, name: str | None, *, org: str | None = None) -> dict[str, Any]:
        org = validate_org(org or self.settings.org)
        name = clean_name(name)
        with self.db.org_tx(org) as conn:
            people_store.rename(conn, org, person, name)
            return self._person(people_store.get_person(conn, org, person))

    def merge_people(self, keep: int, other: int, *, org: str | None = None) -> dict[str, Any]:
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            people_store.merge(conn, org, keep, other)
            return self._person(people_store.get_person(conn, org, keep))

    def enrol(self, name: str, photos: list[bytes], *, org: str | None = None) -> dict[str, Any]:
        """Name the group whose faces match the photos (one face each: the largest), or a new
        person; future matching faces join it. ValueError for a photo without a face."""
        from heimdex.media import faces

        org = validate_org(org or self.settings.org)
        clean = clean_name(name)
        if clean is None:
            raise ValueError("a name is required")
        if not photos:
            raise ValueError("at least one photo is required")
        models = self.models.faces()
        vecs = []
        for i, photo in enumerate(photos, 1):
            found = faces.photo_embeddings(models, decode_photo(photo, i), self.settings.faces_min_size)
            if not found:
                raise ValueError(f"photo {i}: no face found")
            vecs.append(found[0])
        with self.db.org_tx(org) as conn:
            person = people_store.enrol(
                conn, org, clean, vecs, self.settings.faces_match_distance, models.name
            )
            return self._person(people_store.get_person(conn, org, person))

    def forget_person(self, person: int, *, org: str | None = None) -> dict[str, Any]:
        """Erase a person: face rows with their embeddings, face crops, and the track embeddings
        kept in the faces stage's outputs."""
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            thumbs = people_store.forget(conn, org, person)
        erase_face_outputs(self.derived, thumbs)
        return {"id": person, "forgotten": True, "faces": len(thumbs)}

    def regroup(self, *, org: str | None = None) -> dict[str, int]:
        org = validate_org(org or self.settings.org)
        with self.db.org_tx(org) as conn:
            return people_store.regroup(conn, org, self.settings.faces_match_distance)

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
