"""/v1/search/export: the hits of a search as a CMX 3600 edit decision list or CSV, to take into an
editor (DaVinci Resolve, Premiere Pro) or a spreadsheet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response
from flask_openapi3 import OpenAPI, Tag

from heimdex.api.context import BEARER, ApiContext, error_responses, invalid, org
from heimdex.api.models import ExportQuery
from heimdex.media import edl

ERRORS = error_responses(400, 401, 404, 503)  # 404: a `person=` of no one (heimdex.api.people)
SEARCH = Tag(name="search")


def clips(ctx: ApiContext, hits: list[dict[str, Any]]) -> list[edl.Clip]:
    """The hits as clips at their assets' frame rates, linked to their signed media."""
    return edl.clips(
        hits,
        lambda asset_id: ctx.engine.frame_rate(asset_id, org=org()),
        lambda h: ctx.link(ctx.media_url(org(), h["asset_id"]), h["start"]),
    )


def register(
    app: OpenAPI, ctx: ApiContext, run_search: Callable[[Any, int, int], list[dict[str, Any]]]
) -> None:
    @app.get(
        "/v1/search/export",
        tags=[SEARCH],
        security=BEARER,
        responses={
            200: {
                "description": "the hits as an edit list",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **ERRORS,
        },
    )
    def export(query: ExportQuery) -> Any:
        """The hits of a search as a CMX 3600 EDL (format=edl, text/plain) or CSV (format=csv)."""
        if not query.q.strip():
            return invalid("q is required")
        found = clips(ctx, run_search(query, query.k, 0))
        if query.format == "csv":
            return Response(
                edl.table(found),
                content_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="heimdex-hits.csv"'},
            )
        return Response(
            edl.edl(f"Heimdex {query.q.strip()}", found),
            content_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="heimdex-hits.edl"'},
        )

    del export
