"""What the Cloud Functions do, behind their thin entry points in `functions/`.

- storage events (`google.cloud.storage.object.v1.finalized` / `.deleted`): objects are laid out as
  `gs://BUCKET/<org_id>/...`, so the organisation is the first path segment;
- the search API (the Flask app of `heimdex serve`);
- Drive push notifications, channel renewal and folder registration.

One `Services` (database pool, models, adapters) and one dispatcher per process, made on first use, so
a warm instance serves every request with them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from heimdex.cloud.ingest import IngestResult, ingest, remove
from heimdex.config import Settings
from heimdex.domain import is_valid_org
from heimdex.services import Services

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


def settings() -> Settings:
    """The process's settings, read once; a bad value (a short secret, an invalid organisation)
    stops the instance at start-up, where the entry points call this."""
    found: Settings = _once("settings", Settings)
    return found


def engine() -> Services:
    eng: Services = _once("engine", lambda: Services(settings()))
    return eng


def dispatcher() -> Any:
    from heimdex.adapters.cloud_tasks import CloudTasksDispatcher

    return _once("dispatcher", lambda: CloudTasksDispatcher(engine().settings))


def drive_watcher() -> Any:
    def make() -> Any:
        from heimdex.adapters.drive import DriveAccess, DriveWatcher, FirestoreWatchStore
        from heimdex.adapters.firestore_jobs import firestore_client

        settings = engine().settings
        client = firestore_client(settings.project, settings.firestore_database)
        store = FirestoreWatchStore(client, settings.watches_collection)
        return DriveWatcher(DriveAccess.from_settings(settings), store, settings)

    return _once("drive_watcher", make)


def http_app(name: str) -> Flask:
    """The Flask app behind an HTTP function: `search` or `drive_watch`."""

    def make() -> Flask:
        if name == "search":
            from heimdex.api.app import create_app

            return create_app(engine(), dispatcher=dispatcher)
        if name == "drive_watch":
            from heimdex.cloud.drive_watch import create_drive_app

            return create_drive_app(engine(), dispatcher(), drive_watcher)
        raise ValueError(f"no HTTP function {name!r}")

    app: Flask = _once(f"app:{name}", make)
    return app


def warm_search() -> None:
    """Import the query encoder's libraries (ONNX Runtime, tokenizers: no torch, no transformers) and
    check that the text model's ONNX export is there, while the instance starts: a missing export
    stops the instance with the reason instead of failing every request. Only imports and checks:
    the server may fork its workers after this, and a connection pool's threads or a loaded model's
    thread pools do not survive a fork; the engine itself is made by the first request, in the worker."""
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401

    from heimdex.models import Models, ModelUnavailable

    if missing := Models(settings()).onnx_missing():
        raise ModelUnavailable(missing)


def serve_http(name: str, request: Any) -> Any:
    """Answer a functions-framework request with the named app (routing, auth, error handlers)."""
    app = http_app(name)
    # One reader of the body: the app reads through the framework's request stream, so that the
    # framework, which drains the body after every response, finds it read rather than truncated.
    environ = {**request.environ, "wsgi.input": request.stream}
    with app.request_context(environ):
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


MAX_NAME_BYTES = 1024  # GCS object names: 1-1024 bytes of UTF-8, no CR or LF
DIGITS = re.compile(r"[0-9]{1,20}")  # generations and sizes: int64 as GCS writes them (decimal text)


class EventRejected(Exception):
    """An event that can never be handled: acknowledged (so Eventarc does not redeliver it) with this
    reason, never retried."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def outcome(self) -> dict[str, Any]:
        return {"status": "rejected", "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class StorageObject:
    """The fields of a storage event that ingest uses, checked."""

    bucket: str
    name: str
    org_id: str
    generation: str
    size: int | None
    content_type: str | None

    @property
    def source(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def require_source_buckets(config: Settings) -> list[str]:
    if not config.source_buckets:
        raise ValueError("HEIMDEX_SOURCE_BUCKETS is not configured: ingest would accept no bucket")
    return config.source_buckets


def _text(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise EventRejected("invalid_event", f"event field {key!r} must be a non-empty string")
    if "\x00" in value:
        raise EventRejected("invalid_event", f"event field {key!r} contains NUL")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise EventRejected("invalid_event", f"event field {key!r} is not valid Unicode") from None
    return value


def _integer(data: dict[str, Any], key: str) -> int:
    """GCS writes int64 fields as decimal strings; a JSON integer is taken too. Nothing else: no
    sign, fraction, blanks, other digits or lists."""
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and DIGITS.fullmatch(value) and int(value) < 2**63:
        return int(value)
    shown = repr(value)[:40]
    raise EventRejected("invalid_event", f"event field {key!r} must be a non-negative integer, not {shown}")


def check_storage_event(event_type: str, data: Any, config: Settings) -> StorageObject:
    """The object a storage event is about, or EventRejected saying why it can never be handled."""
    if event_type not in (FINALIZED, DELETED):
        raise EventRejected("unsupported_event", f"unexpected event type {event_type!r}"[:200])
    if not isinstance(data, dict):
        raise EventRejected("invalid_event", "event data is not a JSON object")
    bucket = _text(data, "bucket")
    assert bucket is not None
    if bucket not in require_source_buckets(config):
        raise EventRejected("unknown_bucket", f"bucket {bucket[:80]!r} is not a configured source bucket")
    name = _text(data, "name")
    assert name is not None
    org_id = name.split("/", 1)[0] if "/" in name else ""
    if not org_id:
        raise EventRejected("invalid_org", "object is not under an organisation folder (ORG/...)")
    if not is_valid_org(org_id):
        raise EventRejected("invalid_org", f"folder {org_id[:80]!r} is not a valid organisation id")
    if len(name.encode()) > MAX_NAME_BYTES or "\r" in name or "\n" in name:
        raise EventRejected("invalid_event", "object name is longer than 1024 bytes or has CR/LF")
    generation = str(_integer(data, "generation"))
    size = _integer(data, "size") if event_type == FINALIZED or "size" in data else None
    content_type = _text(data, "contentType", required=False)
    return StorageObject(bucket, name, org_id, generation, size, content_type)


def handle_storage_event(event_type: str, event_id: str, data: Any) -> dict[str, Any]:
    """Ingest or remove the object of a storage event. Events that can never be handled are
    answered `rejected` (and acknowledged by the caller); infrastructure errors raise, to be retried."""
    config = settings()
    try:
        obj = check_storage_event(event_type, data, config)
    except EventRejected as exc:
        log.warning("storage event rejected", extra={"event": event_id[:200], **exc.outcome()})
        return exc.outcome()
    eng = engine()
    if seen(event_id, eng.settings):
        return {"status": "duplicate", "reason": f"event {event_id} was handled before"}
    outcome = _handle(eng, event_type, obj)
    remember(event_id, eng.settings)
    log.info("storage event", extra={"event": event_id, "source": obj.source, **outcome})
    return outcome


def _handle(eng: Services, event_type: str, obj: StorageObject) -> dict[str, Any]:
    if event_type == DELETED:
        removed = remove(eng, org_id=obj.org_id, source=obj.source, version=obj.generation)
        return {"status": "removed", "assets": removed}
    assert obj.size is not None
    result: IngestResult = ingest(
        eng,
        dispatcher(),
        org_id=obj.org_id,
        source=obj.source,
        version=obj.generation,
        size=obj.size,
        name=obj.name,
        content_type=obj.content_type,
    )
    outcome: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "job_id": result.ref.job_id if result.ref else None,
    }
    if result.status == "rejected":
        outcome["code"] = "not_accepted"
    return outcome


def malformed_event(exc: Exception) -> Any:
    """A request to the ingest function that is no CloudEvent at all (Eventarc never sends one)."""
    from heimdex.api import errors

    return errors.error(400, "invalid_event", f"not a readable CloudEvent: {exc}"[:300])
