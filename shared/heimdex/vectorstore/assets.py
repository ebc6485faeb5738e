"""Asset queries of the HTTP API (issue 14): pages of assets, an asset's scenes, deletion with a
tombstone (008_assets_api.sql), and uploads. Always inside an org-scoped transaction (db.org_tx):
row-level security confines every statement to the caller's organisation, so another
organisation's id finds nothing, exactly like a missing one."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from heimdex.domain import base_version
from heimdex.vectorstore.store import Conn

ASSET_COLUMNS = (
    "source, asset_id, version, status, error, duration, scenes, sidecar, text_model, image_model,"
    " skipped, lang, lang_note, created_at, updated_at"
)


def page_assets(
    conn: Conn,
    *,
    limit: int,
    after: tuple[str, str] | None = None,
    status: str | None = None,
    source_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` assets ordered by (source, asset_id), starting after the key `after` (keyset
    pagination: a page is stable while assets are added or removed elsewhere in the list)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {ASSET_COLUMNS} FROM assets"
            " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
            "   AND (%(prefix)s::text IS NULL OR starts_with(source, %(prefix)s))"
            "   AND (%(a_source)s::text IS NULL OR (source, asset_id) > (%(a_source)s, %(a_id)s))"
            " ORDER BY source, asset_id LIMIT %(limit)s",
            {
                "status": status,
                "prefix": source_prefix,
                "a_source": after[0] if after else None,
                "a_id": after[1] if after else None,
                "limit": limit,
            },
        ).fetchall()


def get(conn: Conn, asset_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {ASSET_COLUMNS} FROM assets WHERE asset_id = %s", (asset_id,)).fetchone()


def scenes(conn: Conn, asset_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT idx, start_s, end_s, transcript, ocr_text, thumbnail, lang FROM scenes"
            " WHERE asset_id = %s ORDER BY idx",
            (asset_id,),
        ).fetchall()


def scene(conn: Conn, asset_id: str, idx: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT a.source, s.idx, s.start_s, s.end_s, s.thumbnail FROM scenes s"
            " JOIN assets a ON a.org_id = s.org_id AND a.asset_id = s.asset_id"
            " WHERE s.asset_id = %s AND s.idx = %s",
            (asset_id, idx),
        ).fetchone()


def delete(conn: Conn, org_id: str, asset_id: str) -> dict[str, Any] | None:
    """Delete an asset (its scenes by cascade) and remember its (source, version) as deleted, so that
    ingest does not bring the same version back; the deleted row, or None if there was none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "DELETE FROM assets WHERE asset_id = %s RETURNING asset_id, source, version, sidecar",
            (asset_id,),
        ).fetchone()
    if row is None:
        return None
    conn.execute(
        "INSERT INTO deleted_sources (org_id, asset_id, source, version) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (org_id, asset_id) DO UPDATE SET deleted_at = now()",
        (org_id, row["asset_id"], row["source"], base_version(row["version"])),
    )
    return row


def is_deleted(conn: Conn, source: str, version: str) -> bool:
    """Whether this version of a source (re-index marks aside) was deleted through the API."""
    found = conn.execute(
        "SELECT 1 FROM deleted_sources WHERE source = %s AND version = %s LIMIT 1",
        (source, base_version(version)),
    ).fetchone()
    return found is not None


def forget_deleted(conn: Conn, source: str, version: str) -> None:
    """Undo the tombstone: an explicit re-index (`heimdex index --force`) brings it back."""
    conn.execute(
        "DELETE FROM deleted_sources WHERE source = %s AND version = %s", (source, base_version(version))
    )


# -- uploads ----------------------------------------------------------------------------------------

UPLOAD_COLUMNS = (
    "upload_id, idempotency_key, filename, size, content_type, source, status, asset_id, error,"
    " created_at, updated_at"
)


def create_upload(conn: Conn, org_id: str, upload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Insert an upload; with an idempotency key already used, the existing one and False."""
    with conn.cursor(row_factory=dict_row) as cur:
        made = cur.execute(
            "INSERT INTO uploads (org_id, upload_id, idempotency_key, filename, size, content_type,"
            " source, status) VALUES (%(org)s, %(upload_id)s, %(key)s, %(filename)s, %(size)s,"
            " %(content_type)s, %(source)s, 'pending')"
            f" ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING {UPLOAD_COLUMNS}",
            {"org": org_id, **upload},
        ).fetchone()
        if made is not None:
            return made, True
        found = cur.execute(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE idempotency_key = %s", (upload["key"],)
        ).fetchone()
    assert found is not None
    return found, False


def get_upload(conn: Conn, upload_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = %s", (upload_id,)
        ).fetchone()


def claim_upload(conn: Conn, upload_id: str) -> bool:
    """pending -> receiving, for one sender of the bytes; False if another has it (or had it)."""
    claimed = conn.execute(
        "UPDATE uploads SET status = 'receiving', updated_at = now()"
        " WHERE upload_id = %s AND status = 'pending' RETURNING 1",
        (upload_id,),
    ).fetchone()
    return claimed is not None


def update_upload(conn: Conn, upload_id: str, **fields: Any) -> None:
    allowed = {"status", "asset_id", "error", "size"}
    assert set(fields) <= allowed, fields
    sets = ", ".join(f"{k} = %({k})s" for k in fields)
    conn.execute(
        f"UPDATE uploads SET {sets}, updated_at = now() WHERE upload_id = %(upload_id)s",
        {**fields, "upload_id": upload_id},
    )
