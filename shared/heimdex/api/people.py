"""People endpoints (issue 15), registered on the API app by `register`; the logic is in Services
(heimdex.services) and heimdex.vectorstore.people, so these handlers only decode and encode.

    GET    /v1/people                 the organisation's people: id, name, faces, assets, cover
    POST   /v1/people                 enrol: multipart `name` + one or more `photo` files
    GET    /v1/people/{id}            one person and their appearances
    PATCH  /v1/people/{id}            {"name": "..."} (null: unnamed)
    DELETE /v1/people/{id}            forget: faces, embeddings and crops are erased
    POST   /v1/people/{id}/merge      {"other": ID}: that person's faces join this one

Another organisation's person is a 404, as is an id that is not one (past bigint included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, request
from flask_openapi3 import OpenAPI, Tag

from heimdex.api import errors
from heimdex.api.context import BEARER, ApiContext, dump, error_responses, not_found, org
from heimdex.api.models import (
    MAX_PERSON_ID,
    Appearance,
    EnrolBody,
    Error,
    Forgotten,
    MergeBody,
    NameBody,
    PeopleList,
    Person,
    PersonDetail,
    PersonPath,
)
from heimdex.models import ModelUnavailable
from heimdex.vectorstore.people import NameConflict, NoSuchPerson, SamePerson

MAX_PHOTOS = 10
MAX_ENROL_BYTES = 40 * 1024**2
PEOPLE = Tag(name="people", description="Faces grouped into people, named once, searchable")
ERRORS = error_responses(400, 401, 404, 503)


def handled(call: Callable[[], Response]) -> Response:
    """The people errors as the one JSON error shape."""
    try:
        return call()
    except NoSuchPerson:
        return not_found("person")
    except (NameConflict, SamePerson) as exc:
        return errors.error(409, "conflict", str(exc))
    except ModelUnavailable as exc:
        return errors.error(503, "unavailable", f"face models are not available: {exc}")
    except ValueError as exc:
        return errors.error(400, "invalid_request", str(exc))


def register(app: OpenAPI, ctx: ApiContext) -> None:
    """Add the people routes to the API app (authentication and parameter checks are the app's).
    Face crops are answered as signed URLs (`cover_url`, `thumbnail_url`; heimdex.api.media)."""
    engine = ctx.engine

    def person(p: dict[str, Any]) -> Person:
        return Person(**p, cover_url=ctx.face_url(org(), p.get("cover_asset"), p.get("cover_face")))

    def detail(p: dict[str, Any]) -> PersonDetail:
        seen = [
            Appearance(
                **a,
                thumbnail_url=ctx.face_url(org(), a["asset_id"], a["face_id"]) if a["thumbnail"] else None,
            )
            for a in p["appearances"]
        ]
        return PersonDetail(**person(p).model_dump(), appearances=seen)

    @app.errorhandler(NoSuchPerson)
    def unknown_person(exc: NoSuchPerson) -> Response:
        # `person=` on /v1/search and its export naming no one of the organisation.
        return errors.error(404, "not_found", f"person: {exc}")

    @app.before_request
    def enrol_size() -> Response | None:
        # Before the form is parsed: the photos are read into memory.
        enrol = request.method == "POST" and request.path == "/v1/people"
        if enrol and (request.content_length or 0) > MAX_ENROL_BYTES:
            return errors.error(
                413, "payload_too_large", f"at most {MAX_ENROL_BYTES // 1024**2} MB of photos"
            )
        return None

    @app.get("/v1/people", tags=[PEOPLE], security=BEARER, responses={200: PeopleList, **ERRORS})
    def people_list() -> Any:
        """The organisation's people: id, name, faces, assets, cover (the best face crop)."""
        return dump(PeopleList(people=[person(p) for p in engine.people(org=org())]))

    @app.post(
        "/v1/people",
        tags=[PEOPLE],
        security=BEARER,
        responses={201: Person, 409: Error, 413: Error, **ERRORS},
    )
    def people_enrol(form: EnrolBody) -> Any:
        """Name whichever group the photos match (or a new person): every past and future
        appearance. 409 when the photos match a person who has another name."""
        if not form.name.strip():
            return errors.error(400, "invalid_request", "name is required (multipart form field)")
        if not form.photo or len(form.photo) > MAX_PHOTOS:
            return errors.error(400, "invalid_request", f"send 1 to {MAX_PHOTOS} `photo` files")
        photos = [f.read() for f in form.photo]
        return handled(lambda: dump(person(engine.enrol(form.name, photos, org=org())), 201))

    @app.get(
        "/v1/people/<int:person_id>", tags=[PEOPLE], security=BEARER, responses={200: PersonDetail, **ERRORS}
    )
    def people_get(path: PersonPath) -> Any:
        """One person and every appearance (asset, time, face crop)."""
        if path.person_id > MAX_PERSON_ID:
            return not_found("person")
        return handled(lambda: dump(detail(engine.person(path.person_id, org=org()))))

    @app.patch(
        "/v1/people/<int:person_id>", tags=[PEOPLE], security=BEARER, responses={200: Person, **ERRORS}
    )
    def people_name(path: PersonPath, body: NameBody) -> Any:
        """Name (or unname, with null) a person: every past and future appearance, no re-indexing."""
        if path.person_id > MAX_PERSON_ID:
            return not_found("person")
        return handled(lambda: dump(person(engine.name_person(path.person_id, body.name, org=org()))))

    @app.delete(
        "/v1/people/<int:person_id>", tags=[PEOPLE], security=BEARER, responses={200: Forgotten, **ERRORS}
    )
    def people_forget(path: PersonPath) -> Any:
        """Forget a person: their faces, embeddings and face crops are erased; a later appearance
        is a stranger again."""
        if path.person_id > MAX_PERSON_ID:
            return not_found("person")
        return handled(lambda: dump(Forgotten(**engine.forget_person(path.person_id, org=org()))))

    @app.post(
        "/v1/people/<int:person_id>/merge",
        tags=[PEOPLE],
        security=BEARER,
        responses={200: Person, 409: Error, **ERRORS},
    )
    def people_merge(path: PersonPath, body: MergeBody) -> Any:
        """The other person's faces join this one (which keeps its name, or takes the other's)."""
        if path.person_id > MAX_PERSON_ID or body.other > MAX_PERSON_ID:
            return not_found("person")
        return handled(lambda: dump(person(engine.merge_people(path.person_id, body.other, org=org()))))
