"""The embedded runtime: indexing files on this machine, with in-process dispatch.

`Engine` is `heimdex.services.Services` (adapters, search, assets) plus `index()`: claims on the
files (`claims`), the in-process dispatcher (`dispatch`) and the segment process pool
(`segment_pool`). The CLI and `heimdex serve` are thin layers over it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from heimdex.adapters.pg_jobs import PgJobStore
from heimdex.config import Settings
from heimdex.core.sweep import Stall
from heimdex.domain import VIDEO_EXTENSIONS, AssetRef, make_asset_id, validate_org
from heimdex.embedded.claims import SourceClaims
from heimdex.embedded.dispatch import JobResult, LocalDispatcher
from heimdex.embedded.segment_pool import SegmentPool
from heimdex.models import ModelUnavailable
from heimdex.services import Services, absolute_path
from heimdex.vectorstore import store


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


@dataclass(frozen=True)
class Skipped:
    """A file that needs no work (already indexed, same version and models) or cannot be read at all."""

    source: str
    status: str  # ready | failed
    error: str | None = None
    asset_id: str | None = None
    note: str | None = None  # why no work was needed, when it is not the usual "already indexed"


DELETED_NOTE = "deleted from the index; not indexed again until the file changes (or with --force)"

# How often a run checks whether another run has finished with a file it waits for.
CLAIM_POLL_S = 0.5


class Engine(Services):
    """Services plus indexing in this process: the embedded PostgreSQL as job store, a thread pool
    for the stages and a process pool for the segments of long media."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.segments = SegmentPool(self.settings)

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
        if not self.settings.faces_for(org):
            unavailable.add("faces")  # turned off: an asset indexed without faces stays up to date
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
            if self.is_deleted(ref.source, ref.version, org=org):
                if not force:  # DELETE /v1/assets/{id}: not again until the file changes
                    done.append(Skipped(ref.source, "ready", None, ref.asset_id, DELETED_NOTE))
                    continue
                self.forget_deleted(ref.source, ref.version, org=org)
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
        """Fail the jobs, of every organisation, that stalled by the time rule of `heimdex.core.sweep`
        (per-stage deadlines from settings); returns them. The scheduled `/sweep` of the cloud and
        the start of `heimdex index` and `heimdex serve` call this."""
        now, deadlines = now or datetime.now(UTC), self.settings.stage_deadlines()
        if not isinstance(self.jobs, PgJobStore):
            return super().sweep(now)
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

    def close(self) -> None:
        self.segments.close()
        super().close()
