"""What the Cloud Functions do, behind their thin entry points in `functions/`.

- storage events (`google.cloud.storage.object.v1.finalized` / `.deleted`): objects are laid out as
  `gs://BUCKET/<org_id>/...`, so the organisation is the first path segment;
- the search API (the Flask app of `heimdex serve`);
- Drive push notifications, channel renewal and folder registration.

One Engine (database pool, models, adapters) and one dispatcher per process, made on first use, so
a warm instance serves every request with them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from heimdex.config import Settings
from heimdex.engine import Engine
from heimdex.ingest import IngestResult, ingest, remove

log = logging.getLogger(__name__)

FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"

_lock = threading.RLock()
_state: dict[str, Any] = {}


def _once(key: str, make: Callable[[], Any]) -> Any:
    """One instance per process of what `make` builds, made on first use."""
    with _lock:
        if key not in _state:
            _state[key] = make()
        return _state[key]


def engine() -> Engine:
    eng: Engine = _once("engine", lambda: Engine(Settings()))
    return eng


def dispatcher() -> Any:
    from heimdex.adapters.cloud_tasks import CloudTasksDispatcher

    return _once("dispatcher", lambda: CloudTasksDispatcher(engine().settings))


def drive_watcher() -> Any:
    def make() -> Any:
        from heimdex.adapters.drive import DriveWatcher, FirestoreWatchStore, drive_service
        from heimdex.adapters.firestore_jobs import firestore_client

        settings = engine().settings
        client = firestore_client(settings.project, settings.firestore_database)
        store = FirestoreWatchStore(client, settings.watches_collection)
        return DriveWatcher(drive_service(settings), store, settings)

    return _once("drive_watcher", make)


def http_app(name: str) -> Flask:
    """The Flask app behind an HTTP function: `search` or `drive_watch`."""

    def make() -> Flask:
        if name == "search":
            from heimdex.api.app import create_app

            return create_app(engine())
        if name == "drive_watch":
            from heimdex.api.drive_watch import create_drive_app

            return create_drive_app(engine(), dispatcher(), drive_watcher)
        raise ValueError(f"no HTTP function {name!r}")

    app: Flask = _once(f"app:{name}", make)
    return app


def warm_search() -> None:
    """Import the query models' libraries (torch, sentence-transformers: most of a cold start) while
    the instance starts, so that its first request does not pay for them. Only imports: the server
    may fork its workers after this, and a connection pool's threads or a loaded model's thread pools
    do not survive a fork; the engine itself is made by the first request, in the worker."""
    from heimdex.models import import_text_libraries

    import_text_libraries()


def serve_http(name: str, request: Any) -> Any:
    """Answer a functions-framework request with the named app (routing, auth, error handlers)."""
    app = http_app(name)
    with app.request_context(request.environ):
        return app.full_dispatch_request()


def _event_doc(event_id: str, settings: Settings) -> Any:
    from heimdex.adapters.firestore_jobs import firestore_client

    client = firestore_client(settings.project, settings.firestore_database)
    return client.collection(settings.events_collection).document(
        hashlib.sha256(event_id.encode()).hexdigest()
    )


def seen(event_id: str, settings: Settings) -> bool:
    return bool(_event_doc(event_id, settings).get().exists)


def remember(event_id: str, settings: Settings) -> None:
    """Record an event id after it was handled, so a replay is answered without work. Handling is
    idempotent by itself (jobs are created only if absent), so a crash before this line is safe."""
    now = datetime.now(UTC)
    _event_doc(event_id, settings).set(
        {"event_id": event_id, "at": now, "expire_at": now + timedelta(days=settings.job_ttl_days)}
    )


def handle_storage_event(event_type: str, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    eng = engine()
    bucket, name = str(data.get("bucket", "")), str(data.get("name", ""))
    if not bucket or not name:
        return {"status": "rejected", "reason": "event without bucket or object name"}
    org_id = name.split("/", 1)[0] if "/" in name else ""
    source = f"gs://{bucket}/{name}"
    generation = str(data.get("generation", ""))
    if seen(event_id, eng.settings):
        return {"status": "duplicate", "reason": f"event {event_id} was handled before"}
    outcome = _handle(eng, event_type, org_id, source, generation, name, data)
    remember(event_id, eng.settings)
    log.info("storage event", extra={"event": event_id, "source": source, **outcome})
    return outcome


def _handle(
    eng: Engine, event_type: str, org_id: str, source: str, generation: str, name: str, data: dict[str, Any]
) -> dict[str, Any]:
    if event_type == DELETED:
        if not org_id:
            return {"status": "rejected", "reason": "object is not under an organisation folder"}
        removed = remove(eng, org_id=org_id, source=source, version=generation or None)
        return {"status": "removed", "assets": removed}
    if event_type != FINALIZED:
        return {"status": "rejected", "reason": f"unexpected event type {event_type}"}
    if not org_id:
        return {"status": "rejected", "reason": "object is not under an organisation folder (ORG/...)"}
    result: IngestResult = ingest(
        eng,
        dispatcher(),
        org_id=org_id,
        source=source,
        version=generation,
        size=int(data.get("size") or 0),
        name=name,
        content_type=data.get("contentType"),
    )
    return {
        "status": result.status,
        "reason": result.reason,
        "job_id": result.ref.job_id if result.ref else None,
    }
