"""Assets and scenes in PostgreSQL, always inside an org-scoped transaction (see db.org_tx)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from heimdex.domain import AssetRef
from heimdex.media.scenes import Scene, Unit

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class UnitRow:
    unit: Unit
    text_vec: np.ndarray


@dataclass(frozen=True)
class SceneRow:
    scene: Scene
    text_vec: np.ndarray | None
    units: list[UnitRow] = field(default_factory=list)  # its sentences and on-screen texts (007)


def upsert_processing(conn: Conn, ref: AssetRef) -> None:
    conn.execute(
        """INSERT INTO assets (org_id, asset_id, source, version, status)
           VALUES (%s, %s, %s, %s, 'processing')
           ON CONFLICT (org_id, asset_id) DO UPDATE
             SET status = 'processing', error = NULL, updated_at = now()""",
        (ref.org_id, ref.asset_id, ref.source, ref.version),
    )


def mark_failed(conn: Conn, ref: AssetRef, error: str) -> None:
    conn.execute(
        "UPDATE assets SET status = 'failed', error = %s, updated_at = now()"
        " WHERE org_id = %s AND asset_id = %s",
        (error, ref.org_id, ref.asset_id),
    )


def replace_scenes(
    conn: Conn,
    ref: AssetRef,
    rows: list[SceneRow],
    *,
    duration: float,
    sidecar: str,
    text_model: str,
    image_model: str | None,
    skipped: dict[str, str] | None = None,
    lang: str | None = None,
    lang_note: str | None = None,
) -> None:
    """Swap the asset's scenes in one transaction; older versions of the same source go too.
    `skipped`: the signals these scenes were made without, and why. `lang`: the language most of the
    speech is in; `lang_note`: why its speech may not be what an English-only model heard.
    Concurrent swaps of one asset (a task delivered twice at once) queue on a transaction lock, so
    the second replaces the first's rows instead of failing on their keys."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{ref.org_id}/{ref.asset_id}",))
    conn.execute(
        "DELETE FROM assets WHERE org_id = %s AND source = %s AND asset_id <> %s",
        (ref.org_id, ref.source, ref.asset_id),
    )
    conn.execute("DELETE FROM scenes WHERE org_id = %s AND asset_id = %s", (ref.org_id, ref.asset_id))
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO scenes (org_id, asset_id, idx, source, start_s, end_s, transcript, ocr_text,
                                   thumbnail,
                                   text_vec, image_vec, text_model, image_model, lang)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    ref.org_id,
                    ref.asset_id,
                    i,
                    ref.source,
                    r.scene.start,
                    r.scene.end,
                    r.scene.transcript,
                    r.scene.ocr_text,
                    r.scene.thumb,
                    r.text_vec,
                    np.asarray(r.scene.image_vec, dtype=np.float32)
                    if r.scene.image_vec is not None
                    else None,
                    text_model if r.text_vec is not None else None,
                    image_model if r.scene.image_vec is not None else None,
                    r.scene.lang,
                )
                for i, r in enumerate(rows)
            ],
        )
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO scene_units (org_id, asset_id, idx, unit, source, kind, start_s, end_s, text,
                                        text_vec, text_model)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    ref.org_id,
                    ref.asset_id,
                    i,
                    j,
                    ref.source,
                    u.unit.kind,
                    u.unit.start,
                    u.unit.end,
                    u.unit.text,
                    u.text_vec,
                    text_model,
                )
                for i, r in enumerate(rows)
                for j, u in enumerate(r.units)
            ],
        )
    spoken = sorted({r.scene.lang for r in rows if r.scene.lang})
    if spoken:  # the languages keyword search parses queries in (009_languages.sql)
        conn.execute(
            "INSERT INTO scene_languages (org_id, lang) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (ref.org_id, spoken),
        )
    conn.execute(
        """UPDATE assets SET status = 'ready', error = NULL, duration = %s, scenes = %s, sidecar = %s,
                  text_model = %s, image_model = %s, skipped = %s, lang = %s, lang_note = %s,
                  updated_at = now()
           WHERE org_id = %s AND asset_id = %s""",
        (
            duration,
            len(rows),
            sidecar,
            text_model,
            image_model,
            Jsonb(skipped or {}),
            lang,
            lang_note,
            ref.org_id,
            ref.asset_id,
        ),
    )


def get_asset(conn: Conn, asset_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM assets WHERE asset_id = %s", (asset_id,)).fetchone()


def find_assets(conn: Conn, source: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM assets WHERE source = %s ORDER BY updated_at DESC", (source,)
        ).fetchall()


def list_assets(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT source, asset_id, status, error, duration, scenes, skipped, lang, lang_note, updated_at"
            " FROM assets ORDER BY source"
        ).fetchall()


def delete_source(conn: Conn, source: str, version: str | None = None) -> list[str]:
    """Delete the assets (and, by cascade, scenes) of a source; only one version if given."""
    rows = conn.execute(
        "DELETE FROM assets WHERE source = %s AND (%s::text IS NULL OR version = %s) RETURNING asset_id",
        (source, version, version),
    ).fetchall()
    return [r[0] for r in rows]
