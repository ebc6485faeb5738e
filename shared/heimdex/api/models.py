"""Request and response models of the HTTP API (pydantic). flask-openapi3 validates requests with
them and generates the OpenAPI 3.1 document from them (app.py); responses are built as these
models, so what is served is what is documented."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

MAX_QUERY_CHARS = 1000
MAX_SOURCE_CHARS = 2048
MAX_K = 100
MAX_PAGE = 500
MAX_CURSOR_CHARS = 512
MAX_PEOPLE = 10  # person= parameters of one search
MAX_PERSON_CHARS = 200
MAX_PERSON_ID = 2**63 - 1  # person ids are bigint
DIGITS_RE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: no sign, blanks, '_' or other scripts' digits
ASSET_ID_PATTERN = r"^[0-9a-f]{24}$"
UPLOAD_ID_PATTERN = r"^upl-[0-9a-f]{24}$"


def _digits(value: Any) -> Any:
    if isinstance(value, str) and not DIGITS_RE.fullmatch(value):
        raise ValueError("must be an integer written with the digits 0-9")
    return value


Digits = Annotated[int, BeforeValidator(_digits)]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]  # PostgreSQL text cannot hold NUL
AssetId = Annotated[str, StringConstraints(pattern=ASSET_ID_PATTERN)]
PersonRef = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_PERSON_CHARS, pattern=r"^[^\x00]*$")
]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CURSOR_CHARS)]
Status = Literal["processing", "ready", "failed"]
Kind = Literal["speech", "text"]
# Something to look for: at least one character that is not whitespace (the server strips a query),
# said in the document too, so that a client (or a fuzzer) knows "\v" alone is not a query.
QUERY_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
QueryText = Annotated[str, StringConstraints(pattern=QUERY_PATTERN)]
# ISO 639-1 as Whisper names languages (haw: 3 letters).
Lang = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        """pydantic's schema, generated once per model and arguments: flask-openapi3 asks for the
        schema of a request's query model on every request (to find its list fields), which cost
        ~5% of a search's CPU. A copy each time, as callers may change what they get."""
        key = (cls, by_alias, ref_template, schema_generator, mode, union_format)
        found = _SCHEMAS.get(key)
        if found is None:
            found = _SCHEMAS[key] = super().model_json_schema(
                by_alias, ref_template, schema_generator, mode, union_format=union_format
            )
        return copy.deepcopy(found)


_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}  # Strict.model_json_schema's, once each


class Error(BaseModel):
    """Every error of the API: a readable message and a stable machine-readable code (errors.py)."""

    error: str
    code: str


class Health(BaseModel):
    status: Literal["ok"]


# -- search ---------------------------------------------------------------------------------------


class SearchFilters(Strict):
    q: QueryText = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for")
    source: Text | None = Field(
        None, max_length=MAX_SOURCE_CHARS, description="only sources with this prefix"
    )
    asset: AssetId | None = Field(None, description="only this asset")
    after: datetime | None = Field(None, description="only assets first indexed at or after this time")
    before: datetime | None = Field(None, description="only assets first indexed before this time")
    kind: Kind | None = Field(None, description="speech: scenes with speech; text: with on-screen text")
    lang: Lang | None = Field(None, description="only scenes spoken in this language (ISO 639-1, e.g. es)")
    person: list[PersonRef] | None = Field(
        None,
        max_length=MAX_PEOPLE,
        description="only scenes where this person is seen (a name, any person of that name, or an id;"
        " repeat for scenes where all of them are seen)",
    )


def _q_required_in_document(schema: dict[str, Any]) -> None:
    # OpenAPI cannot say "q or person" of query parameters: the document requires q (as before people
    # came), and the server also answers `person` alone (that person's scenes by asset and time).
    schema["required"] = [*schema.get("required", []), "q"]
    schema["properties"]["q"]["minLength"] = 1
    schema["properties"]["q"]["pattern"] = QUERY_PATTERN  # a query needs a character that is not whitespace
    schema["properties"]["q"].pop("default", None)


class SearchQuery(SearchFilters):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_q_required_in_document)
    q: Text = Field(
        "",
        max_length=MAX_QUERY_CHARS,
        description="what to look for; may be left out when `person` is given (the person's scenes by"
        " asset and time)",
    )
    k: Digits = Field(10, ge=1, le=MAX_K, description="hits per page")
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page")


class ExportQuery(SearchFilters):
    k: Digits = Field(10, ge=1, le=MAX_K, description="how many hits the list holds")
    format: Literal["edl", "csv"] = Field("edl", description="CMX 3600 EDL or CSV")


class HitPerson(BaseModel):
    """A person as hits name them."""

    id: int
    name: str | None


class Hit(BaseModel):
    source: str
    asset_id: str
    start: float
    end: float
    score: float
    text: str
    lang: str | None = Field(None, description="the language the scene was spoken in (ISO 639-1)")
    thumbnail: str | None = Field(description="where the thumbnail is stored (a path or bucket URL)")
    thumbnail_url: str | None = Field(description="a signed URL an <img> can load, no credentials")
    media_url: str = Field(description="a signed URL a <video> can play and seek, no credentials")
    link: str = Field(description="media_url opened at the moment (#t=)")
    people: list[HitPerson] = Field(default_factory=list, description="the people seen in the scene")


class SearchResponse(BaseModel):
    results: list[Hit]
    next_cursor: str | None = Field(
        None, exclude_if=lambda v: v is None, description="the next page; absent on the last"
    )


# -- assets ----------------------------------------------------------------------------------------


class AssetsQuery(Strict):
    limit: Digits = Field(50, ge=1, le=MAX_PAGE)
    cursor: Cursor | None = None
    status: Status | None = None
    source: Text | None = Field(None, max_length=MAX_SOURCE_CHARS, description="source prefix")


class AssetPath(BaseModel):
    asset_id: AssetId


class Progress(BaseModel):
    """An indexing job's progress: its tasks (a stage, or one segment of a segmented stage)."""

    job_id: str
    done: int = Field(ge=0, description="tasks finished (done or skipped)")
    total: int = Field(ge=1, description="tasks in the job (grows once the media is split in segments)")
    running: list[str] = Field(description="the tasks running now, e.g. `asr_2`")


class AssetSummary(BaseModel):
    source: str
    asset_id: str
    status: Status
    error: str | None
    duration: float | None
    scenes: int
    skipped: dict[str, str]
    lang: str | None = Field(None, description="the language most of its speech is in (ISO 639-1)")
    lang_note: str | None = Field(
        None, description="why its speech may not be what an English-only model heard"
    )
    indexed_at: datetime | None = Field(description="when indexing last finished (ready or failed)")
    progress: Progress | None = Field(None, description="while processing: its job's progress")


class AssetList(BaseModel):
    assets: list[AssetSummary]
    next_cursor: str | None = Field(
        None, exclude_if=lambda v: v is None, description="the next page; absent on the last"
    )


class VideoInfo(BaseModel):
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames: int | None = None
    rotation: int | None = None


class AudioInfo(BaseModel):
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None


class Probe(BaseModel):
    duration: float | None = None
    size: int | None = Field(None, description="bytes")
    container: str | None = None
    video: VideoInfo | None = None
    audio: AudioInfo | None = None


class StageInfo(BaseModel):
    status: str
    attempts: int | None = None
    started_at: str | None = Field(None, description="when the last attempt started")
    finished_at: str | None = None
    seconds: float | None = Field(None, description="how long the stage took")
    error: str | None = None
    note: str | None = Field(None, description="why a stage was skipped")


class AssetDetail(AssetSummary):
    version: str
    created_at: datetime
    media: Probe | None
    stages: dict[str, StageInfo]
    models: dict[str, str | None]
    language: str | None = Field(description="the spoken language detected, if any")
    media_url: str
    job_id: str


class Scene(BaseModel):
    index: int
    start: float
    end: float
    transcript: str
    ocr_text: str
    lang: str | None = Field(None, description="the language its words were spoken in (ISO 639-1)")
    thumbnail_url: str | None
    media_url: str
    link: str


class SceneList(BaseModel):
    asset_id: str
    scenes: list[Scene]


class Sidecar(BaseModel):
    """The sidecar document (schemas/sidecar.v1.json describes it in full)."""

    model_config = ConfigDict(extra="allow")
    schema_version: int


class Deleted(BaseModel):
    asset_id: str
    deleted: Literal[True]
    source: str


class Reindex(BaseModel):
    asset_id: str
    job_id: str
    status: Literal["queued"]


class Job(BaseModel):
    job_id: str
    asset_id: str
    source: str
    status: str
    error: str | None
    stages: dict[str, Any]


class JobPath(BaseModel):
    job_id: Annotated[str, StringConstraints(pattern=r"^job-[0-9a-f]{24}$")]


# -- media (signed URLs) ----------------------------------------------------------------------------


class MediaPath(BaseModel):
    org_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
    asset_id: AssetId


class ThumbnailPath(MediaPath):
    index: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}$")]


def _seconds(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,13}", value):
        raise ValueError("must be Unix seconds written with the digits 0-9")
    return value


class FacePath(MediaPath):
    face_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")]


class Signature(Strict):
    exp: Annotated[int, BeforeValidator(_seconds)] = Field(
        ge=0, le=10**12, description="expiry, Unix seconds"
    )
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")] = Field(
        description="HMAC-SHA256 of organisation, asset, object and expiry"
    )


# -- uploads ---------------------------------------------------------------------------------------


MAX_OBJECT_BYTES = 5 * 1024**4  # Cloud Storage's largest object; a deployment's own limit is lower


class UploadBody(Strict):
    filename: Text = Field(min_length=1, max_length=255, description="sanitised to one safe path segment")
    size: int = Field(ge=1, le=MAX_OBJECT_BYTES, description="bytes (413 above HEIMDEX_UPLOAD_MAX_BYTES)")
    # Only video is taken; anything else is refused with 415 rather than as a malformed request.
    content_type: Text = Field(
        min_length=1,
        max_length=255,
        json_schema_extra={"pattern": r"^video/[A-Za-z0-9!#$&^_.+-]+$"},
        description="a video/* media type (415 otherwise)",
    )


class UploadPath(BaseModel):
    upload_id: Annotated[str, StringConstraints(pattern=UPLOAD_ID_PATTERN)]


class IdempotencyHeader(BaseModel):
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")] | None
    ) = Field(None, alias="Idempotency-Key")


class Upload(BaseModel):
    upload_id: str
    status: Literal["pending", "receiving", "received", "indexing", "ready", "failed"]
    filename: str = Field(description="the name as stored (sanitised)")
    size: int
    content_type: str
    source: str
    upload_url: str | None = Field(description="while pending: PUT the bytes here, with this content type")
    upload_method: Literal["PUT"] | None = None
    resumable_url: str | None = Field(
        None,
        description="cloud, while pending: a V4 signed URL that starts a resumable upload (POST with"
        " `x-goog-resumable: start`, then PUT to the Location it answers)",
    )
    asset_id: str | None = Field(
        None, description="the asset it becomes: while indexing (embedded) and when ready"
    )
    error: str | None = None


# -- people (issue 15; README "People and faces") ---------------------------------------------------


class Person(BaseModel):
    id: int
    name: str | None
    faces: int = Field(description="face tracks grouped into this person")
    assets: int = Field(description="assets the person is seen in")
    cover: str | None = Field(description="where the person's best face crop is stored")
    cover_url: str | None = Field(None, description="a signed URL of that crop an <img> can load")


class PeopleList(BaseModel):
    people: list[Person]


class Appearance(BaseModel):
    face_id: int = Field(description="the face track")
    asset_id: str
    source: str
    start: float
    end: float
    thumbnail: str | None = Field(description="where this face track's crop is stored")
    thumbnail_url: str | None = Field(None, description="a signed URL of the crop an <img> can load")
    link: str = Field(description="the source at the moment (#t=)")


class PersonDetail(Person):
    appearances: list[Appearance]


class PersonPath(BaseModel):
    # Any digits route here; an id past bigint is answered as a missing person (404), not a 400.
    person_id: int = Field(ge=0)


class NameBody(Strict):
    name: Annotated[str, StringConstraints(max_length=MAX_PERSON_CHARS)] | None = Field(
        description="the person's name; null: unnamed"
    )


def _whole_number(value: Any) -> Any:
    # JSON's integers, 7.0 included (JSON Schema's "integer"); not true/false, not "7".
    if isinstance(value, bool | str):
        raise ValueError("must be a person id (an integer)")
    return value


class MergeBody(Strict):
    other: Annotated[int, BeforeValidator(_whole_number)] = Field(
        ge=1, description="the person whose faces join this one"
    )


class EnrolBody(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PERSON_CHARS)]
    photo: list[FileStorage] = Field(description="1 to 10 photographs of the person (one face each)")


class Forgotten(BaseModel):
    id: int
    forgotten: Literal[True]
    faces: int


# -- web sessions (heimdex.api.web) ------------------------------------------------------------------


class SessionInfo(BaseModel):
    org_id: str
    via: Literal["cookie", "bearer"] = Field(description="what authenticated this request")
    csrf_token: str | None = Field(
        description="cookie sessions: send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE"
    )
    expires_at: int | None = Field(description="cookie sessions: when the session ends (Unix seconds)")


class SessionBody(Strict):
    id_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] = Field(
        description="an ID token the API accepts as a bearer token (Identity Platform in the cloud)"
    )


class SignedOut(BaseModel):
    signed_out: Literal[True]
