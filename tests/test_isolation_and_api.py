"""Organisations never see each other's scenes: in SQL as the application role, and through the API."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from flask.testing import FlaskClient

from heimdex.api.app import create_app
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.embedded.engine import Engine
from heimdex.vectorstore.db import APP_ROLE
from tests.conftest import JWT_SECRET


@pytest.fixture(scope="module")
def client(engine: Engine, corpus: dict[str, Any]) -> FlaskClient:
    return create_app(engine).test_client()


def bearer(org: str = "default", **claims: Any) -> dict[str, str]:
    if claims:
        token = jwt.encode(
            {"org_id": org, "exp": int(time.time()) + 60, **claims}, JWT_SECRET, algorithm="HS256"
        )
    else:
        token = issue_token(JWT_SECRET, org)
    return {"Authorization": f"Bearer {token}"}


def test_rls_hides_other_orgs_even_without_a_filter(engine: Engine, corpus: dict[str, Any]) -> None:
    with engine.db.org_tx("default") as conn:
        own = conn.execute("SELECT count(*) FROM scenes").fetchone()
    with engine.db.org_tx("intruder") as conn:
        seen = conn.execute("SELECT count(*) FROM scenes").fetchone()
        assets = conn.execute("SELECT count(*) FROM assets").fetchone()
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
    assert own is not None and own[0] > 0
    assert seen == (0,) and assets == (0,)


def test_app_role_cannot_write_into_another_org(engine: Engine, corpus: dict[str, Any]) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), engine.db.org_tx("intruder") as conn:
        conn.execute(
            "INSERT INTO assets (org_id, asset_id, source, version, status)"
            " VALUES ('default', 'x', '/x', '1', 'ready')"
        )
    with engine.db.org_tx("intruder") as conn:
        deleted = conn.execute("DELETE FROM scenes WHERE org_id = 'default'").rowcount
    assert deleted == 0


def test_app_role_without_org_sees_nothing(engine: Engine, corpus: dict[str, Any]) -> None:
    with engine.db.pool.connection() as conn, conn.transaction():
        conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        assert conn.execute("SELECT count(*) FROM scenes").fetchone() == (0,)


def test_search_is_scoped_to_the_token_org(engine: Engine, corpus: dict[str, Any]) -> None:
    assert engine.search("dinosaur exhibition", org="default")
    assert engine.search("dinosaur exhibition", org="intruder") == []


def test_api_search_and_assets(client: FlaskClient, corpus: dict[str, Any]) -> None:
    resp = client.get("/v1/search", query_string={"q": "lighthouse lamp storm", "k": 2}, headers=bearer())
    assert resp.status_code == 200
    results = resp.get_json()["results"]
    assert len(results) == 2 and results[0]["source"] == str(corpus["speech"])
    other = client.get("/v1/search", query_string={"q": "lighthouse lamp storm"}, headers=bearer("intruder"))
    assert other.status_code == 200 and other.get_json() == {"results": []}
    assets = client.get("/v1/assets", headers=bearer()).get_json()["assets"]
    assert {a["source"] for a in assets} >= {str(corpus["speech"]), str(corpus["caption"])}
    assert client.get("/v1/assets", headers=bearer("intruder")).get_json() == {"assets": []}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {
            "Authorization": "Bearer "
            + jwt.encode(
                {"org_id": "default", "exp": int(time.time()) + 60},
                "wrong-secret-0123456789abcdef0123456789",
                algorithm="HS256",
            )
        },
        {
            "Authorization": "Bearer "
            + jwt.encode({"org_id": "default", "exp": int(time.time()) - 10}, JWT_SECRET, algorithm="HS256")
        },
        {"Authorization": "Bearer " + jwt.encode({"org_id": "default"}, JWT_SECRET, algorithm="HS256")},
        {
            "Authorization": "Bearer "
            + jwt.encode({"exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
        },
        {
            "Authorization": "Bearer "
            + jwt.encode({"org_id": "../etc", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
        },
        {
            "Authorization": "Bearer "
            + jwt.encode({"org_id": "default", "exp": int(time.time()) + 60}, None, algorithm="none")
        },
    ],
    ids=[
        "missing",
        "empty",
        "basic",
        "garbage",
        "forged",
        "expired",
        "no-exp",
        "no-org",
        "bad-org",
        "alg-none",
    ],
)
def test_bad_tokens_get_401(client: FlaskClient, headers: dict[str, str]) -> None:
    for path in ("/v1/search?q=lighthouse", "/v1/assets", "/v1/jobs/job-x"):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 401, (path, resp.get_json())
        assert resp.get_json()["code"] == "unauthorized" and resp.get_json()["error"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "query",
    [
        {"q": ""},
        {"q": "x" * 1001},
        {"q": "ok", "k": "0"},
        {"q": "ok", "k": "abc"},
        {"q": "ok", "k": "101"},
        {"q": "a\x00b"},
        {"q": "ok", "k": " 5 "},
        {"q": "ok", "k": "+5"},
        {"q": "ok", "k": "1_0"},
        {"q": "ok", "k": "\u0665"},
        {"q": ["a", "b"]},
        {"q": "ok", "source": ["a", "b"]},
    ],
)
def test_bad_parameters_get_400(client: FlaskClient, query: dict[str, Any]) -> None:
    resp = client.get("/v1/search", query_string=query, headers=bearer())
    assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    "q", ["'; DROP TABLE scenes; --", "a & b | !c", "::vector", "\\", "é ü 火事", "(((", "' OR 1=1"]
)
def test_hostile_queries_are_parameters(client: FlaskClient, engine: Engine, q: str) -> None:
    resp = client.get("/v1/search", query_string={"q": q}, headers=bearer())
    assert resp.status_code == 200
    with engine.db.org_tx("default") as conn:
        assert conn.execute("SELECT count(*) FROM scenes").fetchone()[0] > 0  # type: ignore[index]


def test_public_endpoints(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    served = client.get("/openapi.json").get_json()
    in_repo = json.loads((resources.files("heimdex.api") / "openapi.json").read_text())
    assert served == in_repo
    assert set(served["paths"]) >= {
        "/healthz",
        "/openapi.json",
        "/v1/search",
        "/v1/assets",
        "/v1/jobs/{job_id}",
        "/v1/people",
        "/v1/people/{person_id}",
        "/v1/people/{person_id}/merge",
    }
    nope = client.get("/nope", headers=bearer())
    assert nope.status_code == 404 and nope.get_json() == {"error": "not found", "code": "not_found"}


def test_audience_is_checked_when_configured(home: Path, engine: Engine) -> None:
    strict = Engine(
        Settings(home=home, database_url=engine.db.url, jwt_secret=JWT_SECRET, jwt_audience="heimdex-api")
    )
    try:
        client = create_app(strict).test_client()
        now = int(time.time())
        for aud, status in (("heimdex-api", 200), ("other-api", 401), (None, 401)):
            claims: dict[str, Any] = {"org_id": "default", "exp": now + 60}
            if aud:
                claims["aud"] = aud
            token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
            resp = client.get("/v1/assets", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == status, (aud, resp.get_json())
    finally:
        strict.close()


def test_job_status_endpoint(client: FlaskClient, engine: Engine, corpus: dict[str, Any]) -> None:
    asset = next(a for a in engine.assets() if a["source"] == str(corpus["caption"]))
    job = client.get(f"/v1/jobs/job-{asset['asset_id']}", headers=bearer()).get_json()
    assert job["status"] == "ready" and job["source"] == str(corpus["caption"])
    assert set(job["stages"]) == {"probe", "asr", "shots", "ocr", "vision", "faces", "index"}
    other = client.get(f"/v1/jobs/job-{asset['asset_id']}", headers=bearer("intruder"))
    assert other.status_code == 404
