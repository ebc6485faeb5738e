"""The embedded engine: one object that wires settings, database, models, stores and dispatch.

The CLI and the local HTTP API are thin layers over this.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from heimdex.adapters.blobs import DerivedStore, LocalDerivedStore, read_json
from heimdex.adapters.pg_jobs import PgJobStore
from heimdex.adapters.sources import RoutingSourceStore
from heimdex.claims import SourceClaims
from heimdex.config import Settings
from heimdex.domain import VIDEO_EXTENSIONS, AssetRef, make_asset_id, validate_org
from heimdex.index import search as search_sql
from heimdex.index import store
from heimdex.index.db import Database
from heimdex.models import Models, ModelUnavailable
from heimdex.pipeline import JobStore
from heimdex.runner import JobResult, LocalDispatcher
from heimdex.segment_pool import SegmentPool
from heimdex.stages.context import StageContext
from heimdex.sweep import Stall


def absolute_path(raw: str) -> Path:
    """The source name of a local path: absolute and without `.`/`..` parts, so that `dir/sub/../a.mp4`
    and `dir/a.mp4` are one source (Path.absolute() keeps the `..`)."""
    return Path(os.path.normpath(Path(raw).expanduser().absolute()))


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files as given (any extension), and video files found under folders (hidden ones skipped)."""
    out: list[Path] = []
    for raw in paths:
        path = absolute_path(raw)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in VIDEO_EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def is_utf8(name: str) -> bool:
    """False for names with bytes that are not UTF-8 (Python holds them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def deep_link(source: str, start: float) -> str:
    """A link that opens the source at the scene (media fragment `#t=`)."""
    base = Path(source).as_uri() if "://" not in source else source
    return f"{base}#t={start:.1f}"


@dataclass(frozen=True)
class Skipped:
    """A file that needs no work (already indexed, same version and models) or cannot be read at all."""

    source: str
    status: str  # ready | failed
    error: str | None = None
    asset_id: str | None = None
    note: str | None = None  # why no work was needed, when it is not the usual "already indexed"


# How often a run checks whether another run has finished with a file it waits for.
CLAIM_POLL_S = 0.5


def build_derived(settings: Settings) -> DerivedStore:
    if settings.derived_bucket:
        from heimdex.adapters.gcs import GcsDerivedStore, storage_client

        return GcsDerivedStore(storage_client(settings.project), settings.derived_bucket)
    return LocalDerivedStore(settings.home)


def build_jobs(settings: Settings, db: Database) -> JobStore:
    if settings.job_store == "firestore":
        from heimdex.adapters.firestore_jobs import FirestoreJobStore, firestore_client

        client = firestore_client(settings.project, settings.firestore_database)
        return FirestoreJobStore(client, settings.jobs_collection, db, ttl_days=settings.job_ttl_days)
    return PgJobStore(db)


class Engine:
    """Everything a process of Heimdex needs, with adapters chosen by settings: local files, the
    embedded PostgreSQL and in-process dispatch by default; GCS, Firestore and Cloud Tasks in the cloud."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("OMP_NUM_THREADS", str(self.settings.torch_threads))
        self.db = Database(self.settings)
        self.models = Models(self.settings)
        self.derived = build_derived(self.settings)
        self.sources = RoutingSourceStore(self.settings)
        self.jobs = build_jobs(self.settings, self.db)
        self.segments = SegmentPool(self.settings)

    # -- indexing ---------------------------------------------------------------------------------

    def context(self, ref: AssetRef) -> StageContext:
        return StageContext(
            ref=ref,
            settings=self.settings,
            derived=self.derived,
            sources=self.sources,
            models=self.models,
            db=self.db,
        )

    def asset_ref(self, path: Path, org: str) -> AssetRef:
        source = str(path)
        info = self.sources.stat(source)
        return AssetRef(org, make_asset_id(org, source, info.version), source, info.version)

    def index(
        self,
        paths: Iterable[Path],
        *,
        org: str | None = None,
        force: bool = False,
        on_start: Callable[[int], None] | None = None,
        on_finish: Callable[[JobResult | Skipped], None] | None = None,
        on_wait: Callable[[str, str | None], None] | None = None,
    ) -> list[JobResult | Skipped]:
        """Index files; each is claimed first (`claims.SourceClaims`), so a file that another run on
        this home is indexing is waited for (`on_wait(source, who)`) and not indexed twice. A
        KeyboardInterrupt stops the run: no new task starts, segment workers end, claims are freed;
        running again finishes the rest."""
        org = validate_org(org or self.settings.org)
        problems = self.models.check()
        if fatal := [str(p) for p in problems if p.fatal]:
            raise ModelUnavailable("; ".join(fatal))  # before any file: every one would fail the same way
        unavailable = {p.stage for p in problems}
        if not (self.settings.vision_weights or self.settings.vision_random_init):
            unavailable.add("vision")
        done: list[JobResult | Skipped] = []
        todo: list[AssetRef] = []
        for path in paths:
            if not is_utf8(str(path)):
                # Sources are text (database, JSON, links); bytes that are not UTF-8 cannot be one.
                done.append(Skipped(str(path), "failed", "file name is not valid UTF-8; rename the file"))
                continue
            try:
                ref = self.asset_ref(path, org)
            except OSError as exc:
                done.append(Skipped(str(path), "failed", f"cannot read: {exc.strerror or exc}"))
                continue
            if not force and self._up_to_date(ref, unavailable):
                done.append(Skipped(ref.source, "ready", None, ref.asset_id))
                continue
            todo.append(ref)
        if todo:
            # Load the text model while the media stages run; the index stage would wait for it.
            threading.Thread(target=self._warm_text_model, name="warm-text-model", daemon=True).start()
        for item in done:
            if on_finish:
                on_finish(item)
        if not todo:
            return done
        claims = SourceClaims(self.db.url)

        def finished(result: JobResult) -> None:
            claims.release(result.ref)
            if on_finish:
                on_finish(result)

        dispatcher = LocalDispatcher(
            self.context,
            self.jobs,
            workers=self.settings.workers,
            max_attempts=self.settings.max_attempts,
            segments=self.segments,
            on_finish=finished,
        )
        waiting: list[AssetRef] = []
        try:
            for ref in todo:
                if claims.try_claim(ref):
                    dispatcher.submit(ref)
                else:
                    waiting.append(ref)
                    if on_wait:
                        on_wait(ref.source, claims.holder(ref))
            while waiting:
                time.sleep(CLAIM_POLL_S)  # polls a lock that another process holds
                for ref in [r for r in waiting if claims.try_claim(r)]:
                    waiting.remove(ref)
                    if not force and self._up_to_date(ref, unavailable):
                        claims.release(ref)  # the other run indexed it
                        item = Skipped(ref.source, "ready", None, ref.asset_id, "indexed by another run")
                        done.append(item)
                        if on_finish:
                            on_finish(item)
                    else:
                        dispatcher.submit(ref)  # the other run stopped or failed: this one does it
            results = dispatcher.wait()
        except BaseException:  # Ctrl-C, SIGTERM: stop now, leave nothing behind
            dispatcher.stop()
            self.segments.terminate()
            raise
        finally:
            dispatcher.shutdown()
            claims.close()
        return done + list(results)

    def sweep(self, now: datetime | None = None) -> list[Stall]:
        """Fail the jobs, of every organisation, that stalled by the time rule of `heimdex.sweep`
        (per-stage deadlines from settings); returns them. The scheduled `/sweep` of the cloud and
        the start of `heimdex index` and `heimdex serve` call this."""
        now, deadlines = now or datetime.now(UTC), self.settings.stage_deadlines()
        if not isinstance(self.jobs, PgJobStore):
            return self.jobs.sweep(now, deadlines)
        # Embedded: a job whose file a live `heimdex index` run has claimed is that run's to finish;
        # a claim taken here also keeps a new run off the job while it is judged.
        claims = SourceClaims(self.db.url)
        try:
            return self.jobs.sweep(
                now,
                deadlines,
                busy=lambda job: not claims.try_claim(AssetRef(job["org_id"], "", job["source"], "")),
            )
        finally:
            claims.close()

    def _warm_text_model(self) -> None:
        with contextlib.suppress(ModelUnavailable):  # the index stage fails each job with the reason
            self.models.text_encoder()

    def _up_to_date(self, ref: AssetRef, unavailable: set[str]) -> bool:
        """Indexed with the same models, and no signal it was indexed without can be had now
        (`unavailable`: the optional stages whose model or tool is missing or not configured)."""
        with self.db.org_tx(ref.org_id) as conn:
            row = store.get_asset(conn, ref.asset_id)
        if row is None or row["status"] != "ready" or row["text_model"] != self.models.text_name:
            return False
        if set(row["skipped"] or {}) - unavailable:
            return False  # e.g. the Whisper model was missing then and is there now
        return "vision" in unavailable or row["image_model"] is not None

    # -- queries ----------------------------------------------------------------------------------

    def search(
        self, query: str, *, org: str | None = None, k: int = 10, source: str | None = None
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

    def close(self) -> None:
        self.segments.close()
        self.db.close()
