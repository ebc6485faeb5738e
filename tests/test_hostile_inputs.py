"""The hostile review's probes (issue 11, findings 4 and 5), rebuilt in-process: every entry point
answers bad input with a 4xx, or a bucket event that can never be handled with a 200 `rejected`,
always as JSON `{"error", "code"}` (or `{"status": "rejected", "code", "reason"}`), never a 5xx or
Flask's HTML page. Plus the validation that was too lenient: organisation ids matched in full, token
lifetimes, `k`, repeated parameters, the bucket and generation of events, `heimdex token --org`,
short secrets."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import functions_framework
import jwt
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from heimdex.adapters.drive import NotificationRefused
from heimdex.api.app import bearer_org, create_app
from heimdex.api.auth import AuthError, issue_token, jwt_secret, org_from_header
from heimdex.cloud import functions as cloud
from heimdex.cloud.service import create_stage_app
from heimdex.config import Settings
from heimdex.domain import is_valid_org, validate_org
from heimdex.embedded.engine import Engine
from tests.conftest import JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "heimdex-sources"
FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"
BAD_ORG_NAMES = ["My Videos/clip.mp4", "bétä/clip.mp4", "a" * 64 + "/clip.mp4", "beta\n/clip.mp4", "clip.mp4"]


def bearer(org: str = "default") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, org)}"}


def json_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error answer with this status and code; return its body."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    body: dict[str, Any] = resp.get_json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"], body
    return body


# -- functions-framework apps, in-process ------------------------------------------------------------


@pytest.fixture
def framework(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FlaskClient]]:
    """Build a function's app as the Functions runtime does (`functions_framework.create_app`) over
    the given per-process state (`cloud._state`: settings, engine, dispatcher, watcher), and put the
    root logger back afterwards (the entry points set up JSON logging)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def build(target: str, signature: str, state: dict[str, Any]) -> FlaskClient:
        monkeypatch.setattr(cloud, "_state", dict(state))
        source = ROOT / "functions" / target / "main.py"
        app = functions_framework.create_app(target=target, source=str(source), signature_type=signature)
        return app.test_client()

    yield build
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def ingest_fn(
    framework: Callable[..., FlaskClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FlaskClient:
    settings = Settings(home=tmp_path, jwt_secret=JWT_SECRET, source_buckets=[BUCKET])

    def no_store(*_: Any) -> bool:
        raise AssertionError("a hostile event got past validation to the event store")

    monkeypatch.setattr(cloud, "seen", no_store)
    return framework("ingest", "cloudevent", {"settings": settings})


def post_event(client: FlaskClient, data: Any, event_type: str = FINALIZED, event_id: str = "e-1") -> Any:
    event = CloudEvent(
        {
            "type": event_type,
            "source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            "id": event_id,
            "subject": "objects/x",
        },
        data,
    )
    headers, body = to_binary(event)
    return client.post("/", headers=headers, data=body)


def good_object(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "bucket": BUCKET,
        "name": "acme/clip.mp4",
        "generation": "1700000000000000",
        "size": "1048576",
        "contentType": "video/mp4",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def rejected(resp: Any, code: str) -> dict[str, Any]:
    """An event acknowledged (200, so Eventarc does not redeliver it) as rejected, with a reason."""
    assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True)[:300])
    body: dict[str, Any] = resp.get_json()
    assert body["status"] == "rejected" and body["code"] == code and body["reason"], body
    return body


@pytest.mark.parametrize("event_type", [DELETED, FINALIZED])
@pytest.mark.parametrize("name", BAD_ORG_NAMES)
def test_events_for_objects_outside_a_valid_org_are_acknowledged(
    ingest_fn: FlaskClient, event_type: str, name: str
) -> None:
    """Review: delete events for these names answered 500 on every delivery (Eventarc redelivers
    forever). Now each is a 200 `rejected`, as finalize events already were."""
    rejected(post_event(ingest_fn, good_object(name=name), event_type), "invalid_org")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"size": "abc"}, "invalid_event"),
        ({"size": "1.5"}, "invalid_event"),
        ({"size": [1]}, "invalid_event"),
        ({"size": " 5"}, "invalid_event"),
        ({"size": "+5"}, "invalid_event"),
        ({"size": "-1"}, "invalid_event"),
        ({"size": "٥"}, "invalid_event"),
        ({"size": True}, "invalid_event"),
        ({"size": 1.5}, "invalid_event"),
        ({"size": None}, "invalid_event"),  # a finalize event without a size
        ({"contentType": ["video/mp4"]}, "invalid_event"),
        ({"contentType": 5}, "invalid_event"),
        ({"name": "acme/cl\x00ip.mp4"}, "invalid_event"),
        ({"name": "acme/\ud800.mp4"}, "invalid_event"),  # a lone surrogate: no UTF-8 spelling
        ({"name": "acme/line\nbreak.mp4"}, "invalid_event"),
        ({"name": "acme/" + "x" * 1100}, "invalid_event"),
        ({"name": ["acme/clip.mp4"]}, "invalid_event"),
        ({"name": None}, "invalid_event"),
        ({"bucket": None}, "invalid_event"),
        ({"bucket": {"name": BUCKET}}, "invalid_event"),
        ({"bucket": "someone-elses-bucket"}, "unknown_bucket"),
        ({"bucket": BUCKET + "\n"}, "unknown_bucket"),
        ({"generation": None}, "invalid_event"),
        ({"generation": ""}, "invalid_event"),
        ({"generation": "abc"}, "invalid_event"),
        ({"generation": "1e3"}, "invalid_event"),
    ],
)
def test_malformed_event_fields_are_acknowledged_as_rejected(
    ingest_fn: FlaskClient, changes: dict[str, Any], code: str
) -> None:
    body = rejected(post_event(ingest_fn, good_object(**changes)), code)
    assert "\x00" not in json.dumps(body)  # the reason never echoes raw NUL


@pytest.mark.parametrize("data", [[1, 2], "acme/clip.mp4", 5, None])
def test_event_data_that_is_not_an_object_is_acknowledged(ingest_fn: FlaskClient, data: Any) -> None:
    rejected(post_event(ingest_fn, data), "invalid_event")


def test_event_body_that_is_not_json_is_acknowledged(ingest_fn: FlaskClient) -> None:
    headers, _ = to_binary(
        CloudEvent({"type": FINALIZED, "source": "//storage.googleapis.com/x", "id": "e-2"}, {})
    )
    for body in (b"not json{", b"\xff\xfe\x00", b"[", b'{"bucket": '):
        rejected(ingest_fn.post("/", headers=headers, data=body), "invalid_event")


def test_other_event_types_are_acknowledged(ingest_fn: FlaskClient) -> None:
    resp = post_event(ingest_fn, good_object(), "google.cloud.storage.object.v1.archived")
    rejected(resp, "unsupported_event")


def test_requests_that_are_no_cloudevent_get_json_errors(ingest_fn: FlaskClient) -> None:
    for resp in (
        ingest_fn.post("/", data=b"{}", headers={"Content-Type": "application/json"}),
        ingest_fn.post("/", data=b"not json", headers={"Content-Type": "text/plain"}),
        ingest_fn.post("/", data=b"{}", headers={"ce-specversion": "9.9", "ce-id": "x", "ce-type": "t"}),
    ):
        assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)[:300]
        assert resp.mimetype == "application/json" and resp.get_json()["code"]
    json_error(ingest_fn.get("/"), 405, "method_not_allowed")


def test_the_ingest_function_refuses_to_start_without_its_buckets(
    framework: Callable[..., FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEIMDEX_SOURCE_BUCKETS", raising=False)
    with pytest.raises(ValueError, match="HEIMDEX_SOURCE_BUCKETS"):
        framework("ingest", "cloudevent", {})


# -- the search API ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(engine: Engine) -> FlaskClient:
    return create_app(engine).test_client()


def test_nul_in_a_job_id_is_a_400_before_the_database(client: FlaskClient) -> None:
    """Review: `GET /v1/jobs/job-%00` was a 500 from PostgreSQL, as an HTML page."""
    json_error(client.get("/v1/jobs/job-%00", headers=bearer()), 400, "invalid_parameter")
    json_error(client.get("/v1/jobs/job-x", headers=bearer()), 400, "invalid_parameter")
    json_error(client.get("/v1/jobs/" + "job-" + "0" * 300, headers=bearer()), 400, "invalid_parameter")
    json_error(client.get("/v1/jobs/job-" + "0" * 24, headers=bearer()), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "q=a%00b",
        "q=ok&source=%00",
        "q=ok&x%00=1",
        "q=ok&k=%205%20",
        "q=ok&k=+5",
        "q=ok&k=%2B5",
        "q=ok&k=1_0",
        "q=ok&k=%D9%A5",  # Arabic-Indic five
        "q=ok&k=%EF%BC%95",  # fullwidth five
        "q=ok&k=5.0",
        "q=ok&k=",
        "q=ok&k=0",
        "q=ok&k=101",
        "q=ok&k=99999999999999999999",
        "q=a&q=b",
        "q=ok&k=1&k=2",
        "q=ok&source=a&source=b",
        "q=ok&query=ok",
        "q=" + "x" * 1001,
        "q=ok&source=" + "s" * 2049,
    ],
)
def test_bad_search_parameters_get_400_invalid_parameter(client: FlaskClient, query: str) -> None:
    json_error(client.get(f"/v1/search?{query}", headers=bearer()), 400, "invalid_parameter")


def test_repeated_parameters_are_named(client: FlaskClient) -> None:
    body = json_error(client.get("/v1/search?q=a&q=b", headers=bearer()), 400, "invalid_parameter")
    assert "repeated" in body["error"] and "q" in body["error"]


def test_plain_digits_still_work(client: FlaskClient) -> None:
    resp = client.get("/v1/search?q=lighthouse&k=5", headers=bearer())
    assert resp.status_code == 200 and "results" in resp.get_json()


def test_every_error_of_the_api_is_json_with_a_code(client: FlaskClient) -> None:
    json_error(client.get("/nope", headers=bearer()), 404, "not_found")
    json_error(client.get("/v1/assets/x/y", headers=bearer()), 404, "not_found")
    resp = json_error(client.post("/v1/search?q=x", headers=bearer()), 405, "method_not_allowed")
    assert resp and "GET" in client.post("/v1/search?q=x", headers=bearer()).headers["Allow"]
    json_error(client.get("/v1/assets"), 401, "unauthorized")
    json_error(client.get("/v1/assets?lmit=5", headers=bearer()), 400, "invalid_parameter")


class BrokenEngine:
    """An engine whose every call fails as a bug would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def assets(self, *, org: str) -> Any:
        raise RuntimeError("a bug that should never reach the client")

    def asset_page(self, **_: Any) -> Any:  # what GET /v1/assets calls since it takes pages
        raise RuntimeError("a bug that should never reach the client")


def test_an_unexpected_error_is_a_logged_json_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(BrokenEngine(Settings(home=tmp_path, jwt_secret=JWT_SECRET)))
    with caplog.at_level(logging.ERROR):
        resp = app.test_client().get("/v1/assets", headers=bearer())
    body = json_error(resp, 500, "internal")
    assert "bug" not in body["error"]  # not shown to the client...
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)  # ...but logged


def test_the_search_function_answers_json_through_the_framework(
    framework: Callable[..., FlaskClient], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fn = framework("search", "http", {"settings": engine.settings, "engine": engine})
    json_error(fn.get("/v1/jobs/job-%00", headers=bearer()), 400, "invalid_parameter")
    json_error(fn.get("/v1/search?q=ok&k=1_0", headers=bearer()), 400, "invalid_parameter")
    json_error(fn.get("/favicon.ico"), 404, "not_found")  # the framework's own route
    json_error(fn.get("/v1/assets", headers={"Authorization": "Bearer x"}), 401, "unauthorized")

    def broken(name: str) -> Flask:
        raise RuntimeError("engine could not be made")

    monkeypatch.setattr(cloud, "http_app", broken)
    json_error(fn.get("/v1/assets", headers=bearer()), 500, "internal")  # the framework's handler


def test_a_short_secret_stops_the_search_function_at_start_up(
    framework: Callable[..., FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEIMDEX_JWT_SECRET", "too-short-a-secret")
    with pytest.raises(ValidationError) as caught:
        framework("search", "http", {})
    assert "at least 32 bytes" in str(caught.value)
    assert "too-short-a-secret" not in str(caught.value)  # errors never quote a secret


# -- tokens ------------------------------------------------------------------------------------------


def signed(claims: dict[str, Any]) -> str:
    return "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")


DAY = 24 * 3600
LENIENT_CLAIMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "org-newline": lambda now: {"org_id": "beta\n", "exp": now + 60},
    "org-64": lambda now: {"org_id": "a" * 64, "exp": now + 60},
    "org-accents": lambda now: {"org_id": "bétä", "exp": now + 60},
    "exp-string": lambda now: {"org_id": "default", "exp": str(now + 60)},
    "exp-bool": lambda now: {"org_id": "default", "exp": True},
    "exp-400-days": lambda now: {"org_id": "default", "exp": now + 400 * DAY},
    "exp-year-33658": lambda now: {"org_id": "default", "exp": 1e12},
    "iat-string": lambda now: {"org_id": "default", "exp": now + 60, "iat": str(now)},
    "nbf-string": lambda now: {"org_id": "default", "exp": now + 60, "nbf": str(now)},
}


@pytest.mark.parametrize("claims", LENIENT_CLAIMS.values(), ids=LENIENT_CLAIMS.keys())
def test_lenient_token_claims_are_refused(
    client: FlaskClient, claims: Callable[[int], dict[str, Any]]
) -> None:
    resp = client.get("/v1/assets", headers={"Authorization": signed(claims(int(time.time())))})
    json_error(resp, 401, "unauthorized")


def test_the_token_lifetime_limit_is_configurable(tmp_path: Path) -> None:
    now = int(time.time())
    strict = bearer_org(Settings(home=tmp_path, jwt_secret=JWT_SECRET, max_token_ttl_s=600))
    default = bearer_org(Settings(home=tmp_path, jwt_secret=JWT_SECRET))
    with Flask(__name__).app_context():  # refusals are JSON responses
        assert strict(signed({"org_id": "acme", "exp": now + 500})) == ("acme", None)
        _, refused = strict(signed({"org_id": "acme", "exp": now + 3600}))
        assert refused is not None and refused.status_code == 401
        assert default(signed({"org_id": "acme", "exp": now + 23 * 3600})) == ("acme", None)
    with pytest.raises(AuthError, match="expires more than"):
        org_from_header(signed({"org_id": "acme", "exp": now + 2 * DAY}), JWT_SECRET)


# -- organisation ids, settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "org", ["beta\n", "beta\r", " beta", "beta ", "", "a" * 64, "bétä", "a/b", ".a", "a\x00"]
)
def test_invalid_org_ids_are_refused_in_full(org: str) -> None:
    assert not is_valid_org(org)
    with pytest.raises(ValueError):
        validate_org(org)
    with pytest.raises(ValidationError):
        Settings(org=org)


@pytest.mark.parametrize("org", ["beta", "a" * 63, "Acme_1.prod-2"])
def test_valid_org_ids(org: str) -> None:
    assert validate_org(org) == org


def test_short_secrets_are_refused_at_start_up(tmp_path: Path) -> None:
    for short in ("", "x" * 31, "é" * 15):  # bytes, not characters: 30 bytes
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            Settings(jwt_secret=short)
    assert Settings(jwt_secret="é" * 16).jwt_secret == "é" * 16  # 32 bytes
    (tmp_path / "jwt_secret").write_text("short\n")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        jwt_secret(Settings(home=tmp_path))


# -- drive_watch -------------------------------------------------------------------------------------


class StubWatcher:
    """Records what reaches it; hostile input must be refused before it does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def unregister(self, org: str, folder_id: str) -> bool:
        self.calls.append(("unregister", org, folder_id))
        return False

    def register(self, org: str, folder_id: str) -> Any:
        self.calls.append(("register", org, folder_id))
        raise ValueError(f"Drive item {folder_id!r} is not a folder id")

    def handle_notification(self, headers: Any) -> list[Any]:
        raise NotificationRefused("unknown channel")


@pytest.fixture
def watcher() -> StubWatcher:
    return StubWatcher()


@pytest.fixture
def drive_fn(framework: Callable[..., FlaskClient], engine: Engine, watcher: StubWatcher) -> FlaskClient:
    state = {"settings": engine.settings, "engine": engine, "dispatcher": object(), "drive_watcher": watcher}
    return framework("drive_watch", "http", state)


@pytest.mark.parametrize("folder", ["bad%20id", "x" * 300, "a%00b", "a.b", "%C3%A9t%C3%A9"])
def test_bad_folder_ids_are_a_400(drive_fn: FlaskClient, watcher: StubWatcher, folder: str) -> None:
    """Review: `DELETE /v1/watches/bad%20id` and a 300-character id answered 500."""
    json_error(drive_fn.delete(f"/v1/watches/{folder}", headers=bearer()), 400, "invalid_parameter")
    assert watcher.calls == []


def test_drive_watch_errors_are_json(drive_fn: FlaskClient, watcher: StubWatcher) -> None:
    json_error(drive_fn.delete("/v1/watches/abc", headers=bearer()), 404, "not_found")
    json_error(drive_fn.delete("/v1/watches/abc"), 401, "unauthorized")
    for body in (b"not json", b"[1]", b'{"folder_id": 5}', b'{"folder_id": ""}'):
        resp = drive_fn.post(
            "/v1/watches", data=body, headers={**bearer(), "Content-Type": "application/json"}
        )
        json_error(resp, 400, "invalid_request")
    resp = drive_fn.post("/v1/watches", json={"folder_id": "bad id"}, headers=bearer())
    json_error(resp, 400, "invalid_parameter")
    resp = drive_fn.post("/v1/watches", json={"folder_id": "abc"}, headers=bearer())
    json_error(resp, 400, "invalid_parameter")  # not a folder (the watcher said so)
    big = drive_fn.post(
        "/v1/watches", data=b"x" * 100_000, headers={**bearer(), "Content-Type": "application/json"}
    )
    json_error(big, 413, "payload_too_large")
    json_error(drive_fn.post("/notifications"), 403, "forbidden")
    json_error(drive_fn.get("/notifications"), 405, "method_not_allowed")
    json_error(drive_fn.get("/nope"), 404, "not_found")
    assert [c[0] for c in watcher.calls] == ["unregister", "register"]


# -- stage services ----------------------------------------------------------------------------------


class NoDispatcher:
    def stage_url(self, stage: str) -> str:
        return f"https://heimdex-{stage}.example.run.app/"

    def enqueue(self, ref: object, stage: str) -> None:
        raise AssertionError("a hostile task was run")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        json.dumps({"org_id": "beta\n", "asset_id": "a", "source": "/x", "version": "1"}).encode(),
        json.dumps({"org_id": "default", "asset_id": "a\u0000", "source": "/x", "version": "1"}).encode(),
        json.dumps({"org_id": "default", "asset_id": "a", "source": ["/x"], "version": "1"}).encode(),
        json.dumps({"org_id": "default", "asset_id": "a", "source": "/x", "version": 1}).encode(),
    ],
)
def test_stage_services_refuse_malformed_tasks_with_json(engine: Engine, body: bytes) -> None:
    app = create_stage_app("probe", engine, NoDispatcher()).test_client()
    resp = app.post("/", data=body, headers={"Content-Type": "application/json"})
    json_error(resp, 400, "invalid_request")


def test_stage_service_errors_are_json(engine: Engine) -> None:
    app = create_stage_app("probe", engine, NoDispatcher()).test_client()
    json_error(app.get("/nope"), 404, "not_found")
    json_error(app.get("/"), 405, "method_not_allowed")
    big = app.post("/", data=b"{" + b" " * 100_000 + b"}", headers={"Content-Type": "application/json"})
    json_error(big, 413, "payload_too_large")


# -- the command line --------------------------------------------------------------------------------


def run_cli(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("org", ["bad/org", "beta\n", "", "a" * 64, "bétä"])
def test_token_for_an_invalid_org_exits_64_with_one_line(
    heimdex_cmd: list[str], cli_env: dict[str, str], org: str
) -> None:
    """Review: `heimdex token --org bad/org` minted a token the server refuses; `beta\\n` passed."""
    out = run_cli(heimdex_cmd, cli_env, "token", "--org", org)
    assert out.returncode == 64, out
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "organisation id" in out.stderr


def test_every_command_checks_org_the_same_way(heimdex_cmd: list[str], cli_env: dict[str, str]) -> None:
    for args in (["search", "x", "--org", "bad/org"], ["assets", "--org", "beta\n"]):
        out = run_cli(heimdex_cmd, cli_env, *args)
        assert out.returncode == 64 and len(out.stderr.strip().splitlines()) == 1, out


def test_token_ttl_beyond_what_the_server_accepts_exits_64(
    heimdex_cmd: list[str], cli_env: dict[str, str]
) -> None:
    out = run_cli(heimdex_cmd, cli_env, "token", "--ttl", str(2 * 24 * 3600))
    assert out.returncode == 64 and "HEIMDEX_MAX_TOKEN_TTL_S" in out.stderr and out.stdout == "", out
    ok = run_cli(heimdex_cmd, cli_env, "token", "--org", "acme")
    assert ok.returncode == 0, ok
    assert org_from_header(f"Bearer {ok.stdout.strip()}", JWT_SECRET) == "acme"


@pytest.mark.parametrize(
    ("var", "value", "word"),
    [("HEIMDEX_JWT_SECRET", "short-secret", "32 bytes"), ("HEIMDEX_ORG", "beta\n", "organisation id")],
)
def test_bad_settings_stop_the_cli_with_one_line(
    heimdex_cmd: list[str], cli_env: dict[str, str], var: str, value: str, word: str
) -> None:
    out = run_cli(heimdex_cmd, {**cli_env, var: value}, "token")
    assert out.returncode == 78, out
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
    assert var in out.stderr and word in out.stderr
    assert "short-secret" not in out.stderr
