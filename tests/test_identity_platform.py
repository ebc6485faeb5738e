"""Cloud sign-in end to end: Identity Platform ID tokens through the served API.

Tokens are signed (RS256, PyJWT) by a locally generated RSA key whose X.509 certificate is served
to google-auth from 127.0.0.1 in the format Google serves its `securetoken` certificates
({key id: PEM}); the API runs with HEIMDEX_AUTH_MODE=identity_platform against the session's index.
A token is accepted only with the right issuer (https://securetoken.google.com/<project>), audience
(<project>), a valid signature by a served key, a live `exp`/`iat`, a subject and a valid `org_id`
claim; everything else is a 401, and certificates that cannot be fetched are a 503.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient

from heimdex.api import auth
from heimdex.api.app import create_app
from heimdex.cloud.drive_watch import create_drive_app
from heimdex.config import Settings
from heimdex.embedded.engine import Engine

PROJECT = "heimdex-test-project"
ISSUER = f"https://securetoken.google.com/{PROJECT}"
KID = "test-key-1"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class CertServer:
    """Serves {kid: PEM} with a Cache-Control max-age, as Google does, and counts the fetches."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.certs).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"good": rsa_key(), "other": rsa_key()}


@pytest.fixture(scope="module")
def certs(keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[CertServer]:
    server = CertServer({KID: certificate_pem(keys["good"])})
    yield server
    server.close()


@pytest.fixture(scope="module")
def cloud_engine(home: Path, engine: Engine, certs: CertServer) -> Iterator[Engine]:
    """The session's index served as the search function serves it in the cloud."""
    eng = Engine(
        Settings(
            home=home,
            database_url=engine.db.url,
            auth_mode="identity_platform",
            google_audience=PROJECT,
            auth_certs_url=certs.url,
        )
    )
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def client(cloud_engine: Engine, corpus: dict[str, Any]) -> FlaskClient:
    return create_app(cloud_engine).test_client()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": PROJECT,
        "auth_time": now - 5,
        "user_id": "u-123",
        "sub": "u-123",
        "iat": now - 5,
        "exp": now + 3600,
        "email": "editor@example.com",
        "firebase": {"identities": {"email": ["editor@example.com"]}, "sign_in_provider": "password"},
        "org_id": "default",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def token(key: rsa.RSAPrivateKey, body: dict[str, Any], kid: str | None = KID, alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_identity_platform_token_searches_its_own_organisation(
    client: FlaskClient, keys: dict[str, rsa.RSAPrivateKey], corpus: dict[str, Any]
) -> None:
    good = bearer(token(keys["good"], claims()))
    resp = client.get("/v1/search", query_string={"q": "lighthouse lamp storm", "k": 2}, headers=good)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["results"][0]["source"] == str(corpus["speech"])
    # The organisation is the token's claim: another organisation's token sees nothing of it.
    other = bearer(token(keys["good"], claims(org_id="intruder")))
    resp = client.get("/v1/search", query_string={"q": "lighthouse lamp storm"}, headers=other)
    assert resp.status_code == 200 and resp.get_json() == {"results": []}


def refused_tokens(keys: dict[str, rsa.RSAPrivateKey]) -> dict[str, str]:
    good, other = keys["good"], keys["other"]
    now = int(time.time())
    public_pem = good.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "wrong-issuer-google-oauth": token(good, claims(iss="https://accounts.google.com")),
        "wrong-issuer-other-project": token(good, claims(iss="https://securetoken.google.com/other")),
        "no-issuer": token(good, claims(iss=None)),
        "wrong-audience": token(good, claims(aud="other-project")),
        "no-audience": token(good, claims(aud=None)),
        "expired": token(good, claims(iat=now - 7200, exp=now - 3600)),
        "issued-in-the-future": token(good, claims(iat=now + 600, exp=now + 3600)),
        "no-exp": token(good, claims(exp=None)),
        "unsigned-alg-none": jwt.encode(claims(), None, algorithm="none", headers={"kid": KID}),
        "signature-stripped": token(good, claims()).rsplit(".", 1)[0] + ".",
        "signed-by-another-key": token(other, claims()),
        "unknown-key-id": token(good, claims(), kid="not-served"),
        "no-key-id": token(good, claims(), kid=None),
        "hs256-with-the-public-key": _hs256_confusion(public_pem),
        "no-subject": token(good, claims(sub=None)),
        "empty-subject": token(good, claims(sub="")),
        "auth-time-in-the-future": token(good, claims(auth_time=now + 600)),
        "no-org": token(good, claims(org_id=None)),
        "bad-org": token(good, claims(org_id="../etc")),
        "org-not-a-string": token(good, claims(org_id=["default"])),
        "garbage": "not-a-jwt",
    }


def _hs256_confusion(public_pem: bytes) -> str:
    """An HS256 token keyed with the RSA public key (algorithm confusion), built by hand because PyJWT
    refuses to use a PEM as an HMAC secret."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = b64(json.dumps(claims()).encode())
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_refused_tokens_get_401(client: FlaskClient, keys: dict[str, rsa.RSAPrivateKey]) -> None:
    refused = refused_tokens(keys)
    for name, value in refused.items():
        for path in ("/v1/search?q=lighthouse", "/v1/assets", "/v1/jobs/job-x"):
            resp = client.get(path, headers=bearer(value))
            assert resp.status_code == 401, (name, path, resp.get_json())
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert len(refused) >= 20


def test_certificates_are_cached(
    cloud_engine: Engine, certs: CertServer, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    client = create_app(cloud_engine).test_client()
    before = certs.fetches
    for _ in range(5):
        assert client.get("/v1/assets", headers=bearer(token(keys["good"], claims()))).status_code == 200
    # Five tokens, at most one fetch (none if an earlier test filled this URL's cache); an unknown key
    # id refetches at most once a minute, so a flood of bad key ids does not hammer the server.
    for _ in range(5):
        bad = bearer(token(keys["good"], claims(), kid=f"unknown-{time.time_ns()}"))
        assert client.get("/v1/assets", headers=bad).status_code == 401
    assert certs.fetches - before <= 1


def test_rotated_key_is_fetched(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    """A token signed with a key id the cache does not hold yet (Google rotated its keys) is verified
    after one refetch."""
    server = CertServer({KID: certificate_pem(keys["good"])})
    try:
        cache = auth.CertCache(server.url, min_refetch_s=0)
        assert KID in cache.for_key(KID)
        server.certs = {"rotated": certificate_pem(keys["other"])}
        body = auth.verify_identity_platform_token(
            token(keys["other"], claims(), kid="rotated"), project=PROJECT, certs=cache
        )
        assert body["org_id"] == "default" and server.fetches == 2
    finally:
        server.close()


def test_unreachable_certificates_are_a_503_not_a_401(
    home: Path, engine: Engine, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    server = CertServer({})
    url = server.url
    server.close()  # nothing listens there any more
    settings = Settings(
        home=home,
        database_url=engine.db.url,
        auth_mode="identity_platform",
        google_audience=PROJECT,
        auth_certs_url=url,
    )
    fake_engine = SimpleNamespace(settings=settings)
    resp = (
        create_app(fake_engine).test_client().get("/v1/assets", headers=bearer(token(keys["good"], claims())))
    )
    assert resp.status_code == 503 and resp.headers["Retry-After"]


def test_drive_watch_registration_uses_the_same_sign_in(
    cloud_engine: Engine, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    registered: list[tuple[str, str]] = []

    class Watcher:
        def register(self, org: str, folder_id: str) -> Any:
            registered.append((org, folder_id))
            return SimpleNamespace(public=lambda: {"org_id": org, "folder_id": folder_id})

    watcher = Watcher()
    app = create_drive_app(cloud_engine, dispatcher=None, watcher=lambda: watcher)  # type: ignore[arg-type]
    client = app.test_client()
    wrong = bearer(token(keys["good"], claims(iss="https://accounts.google.com")))
    assert client.post("/v1/watches", json={"folder_id": "F"}, headers=wrong).status_code == 401
    good = bearer(token(keys["good"], claims(org_id="acme")))
    assert client.post("/v1/watches", json={"folder_id": "F"}, headers=good).status_code == 201
    assert registered == [("acme", "F")]


def test_expired_certificates_still_serve_while_google_is_unreachable(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    server = CertServer({KID: certificate_pem(keys["good"])})
    cache = auth.CertCache(server.url, min_refetch_s=0)
    assert KID in cache.for_key(KID)
    server.close()
    cache._expires = 0.0  # past max-age, and the server is gone
    body = auth.verify_identity_platform_token(token(keys["good"], claims()), project=PROJECT, certs=cache)
    assert body["sub"] == "u-123"
    with pytest.raises(auth.CertificatesUnavailable):
        cache.for_key("a-key-it-never-had")
