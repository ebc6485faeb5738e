"""People endpoints (issue 15), registered on the API app by `register`; the logic is in
Services (heimdex.services) and heimdex.vectorstore.people, so these handlers only decode.

    GET    /v1/people                 the organisation's people: id, name, faces, assets, cover
    POST   /v1/people                 enrol: multipart `name` + one or more `photo` files
    GET    /v1/people/{id}            one person and their appearances
    PATCH  /v1/people/{id}            {"name": "..."} (null: unnamed)
    DELETE /v1/people/{id}            forget: faces, embeddings and crops are erased
    POST   /v1/people/{id}/merge      {"other": ID}: that person's faces join this one

Another organisation's person is a 404, as is an id that is not one.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request

from heimdex.api import errors
from heimdex.models import ModelUnavailable
from heimdex.vectorstore.people import NameConflict, NoSuchPerson, SamePerson

MAX_ID = 2**63 - 1
MAX_PHOTOS = 10
MAX_ENROL_BYTES = 40 * 1024**2


def _not_found() -> Response:
    return errors.error(404, "not_found", "no such person")


def _json_body() -> dict[str, Any] | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def register(app: Flask, engine: Any) -> None:
    """Add the people routes to the API app (auth and parameter checks are the app's own)."""

    def handled(fn: Any) -> Any:
        try:
            return fn()
        except NoSuchPerson:
            return _not_found()
        except (NameConflict, SamePerson) as exc:
            return errors.error(409, "conflict", str(exc))
        except ModelUnavailable as exc:
            return errors.error(503, "unavailable", f"face models are not available: {exc}")
        except ValueError as exc:
            return errors.error(400, "invalid_request", str(exc))

    @app.get("/v1/people")
    def people_list() -> Any:
        return {"people": engine.people(org=g.org_id)}

    @app.post("/v1/people")
    def people_enrol() -> Any:
        if (request.content_length or 0) > MAX_ENROL_BYTES:
            return errors.error(
                413, "payload_too_large", f"at most {MAX_ENROL_BYTES // 1024**2} MB of photos"
            )
        name = request.form.get("name", "")
        files = request.files.getlist("photo")
        if not name.strip():
            return errors.error(400, "invalid_request", "name is required (multipart form field)")
        if not files or len(files) > MAX_PHOTOS:
            return errors.error(400, "invalid_request", f"send 1 to {MAX_PHOTOS} `photo` files")
        photos = [f.read() for f in files]
        return handled(lambda: (engine.enrol(name, photos, org=g.org_id), 201))

    @app.get("/v1/people/<int:person>")
    def people_get(person: int) -> Any:
        if person > MAX_ID:
            return _not_found()
        return handled(lambda: engine.person(person, org=g.org_id))

    @app.patch("/v1/people/<int:person>")
    def people_name(person: int) -> Any:
        body = _json_body()
        if (
            body is None
            or set(body) != {"name"}
            or not (body["name"] is None or isinstance(body["name"], str))
        ):
            return errors.error(400, "invalid_request", 'the body is {"name": "..."} (null: unnamed)')
        if person > MAX_ID:
            return _not_found()
        return handled(lambda: engine.name_person(person, body["name"], org=g.org_id))

    @app.delete("/v1/people/<int:person>")
    def people_forget(person: int) -> Any:
        if person > MAX_ID:
            return _not_found()
        return handled(lambda: engine.forget_person(person, org=g.org_id))

    @app.post("/v1/people/<int:person>/merge")
    def people_merge(person: int) -> Any:
        body = _json_body()
        other = body.get("other") if body is not None else None
        if body is None or set(body) != {"other"} or not isinstance(other, int) or isinstance(other, bool):
            return errors.error(400, "invalid_request", 'the body is {"other": ID}')
        if person > MAX_ID or not 0 < other <= MAX_ID:
            return _not_found()
        return handled(lambda: engine.merge_people(person, other, org=g.org_id))
