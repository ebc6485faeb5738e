"""Implementations of the interfaces in `heimdex.core` (blob storage, job store, dispatch), one
module per backend, and the choice between them, made here from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from heimdex.config import Settings

if TYPE_CHECKING:
    from heimdex.core.jobs import JobStore
    from heimdex.core.storage import DerivedStore
    from heimdex.vectorstore.db import Database


def build_derived(settings: Settings) -> DerivedStore:
    if settings.derived_bucket:
        from heimdex.adapters.gcs import GcsDerivedStore, storage_client

        return GcsDerivedStore(storage_client(settings.project), settings.derived_bucket)
    from heimdex.adapters.local import LocalDerivedStore

    return LocalDerivedStore(settings.home)


def build_jobs(settings: Settings, db: Database) -> JobStore:
    if settings.job_store == "firestore":
        from heimdex.adapters.firestore_jobs import FirestoreJobStore, firestore_client

        client = firestore_client(settings.project, settings.firestore_database)
        return FirestoreJobStore(client, settings.jobs_collection, db, ttl_days=settings.job_ttl_days)
    from heimdex.adapters.pg_jobs import PgJobStore

    return PgJobStore(db)
