"""The OpenAPI document, fuzzed with schemathesis against the app: no 5xx, and every response
conforms to the document (status codes, content types, bodies)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import waitress
from hypothesis import HealthCheck, settings
from schemathesis import checks

from heimdex.api.app import create_app, openapi_document
from heimdex.api.auth import issue_token
from heimdex.embedded.engine import Engine
from tests.conftest import JWT_SECRET

schema = schemathesis.openapi.from_dict(openapi_document())
# Valid and invalid inputs alike (missing or malformed parameters, wrong types, odd strings).
schema.config.generation.update(modes=list(schemathesis.GenerationMode))
# A valid request may also be too large for this deployment's configured upload limit (413, below
# the documented maximum, HEIMDEX_UPLOAD_MAX_BYTES).
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses,
    "413",
]


@pytest.fixture(scope="module")
def base_url(engine: Engine, corpus: dict[str, Any]) -> Iterator[str]:
    """The app served over HTTP by waitress (as `heimdex serve` does), over the indexed corpus."""
    server = waitress.create_server(create_app(engine), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_and_never_fails(case: Any, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {issue_token(JWT_SECRET, 'default')}"},
        # Our valid token replaces the generator's "missing Authorization" mutation, and requests
        # drops parameters without a name, so "schema-violating request accepted" would judge
        # requests that were never sent; unknown and invalid parameters are asserted elsewhere.
        excluded_checks=[
            checks.negative_data_rejection,
            checks.missing_required_header,
            # A cursor is an opaque token the server issued: any other string is a 400 by design
            # (tests/test_api_surface.py asserts it), whatever its shape.
            *([checks.positive_data_acceptance] if "cursor" in (case.query or {}) else []),
            # Enrolment's photos are valid by what they show (a face), which no schema can say.
            *([checks.positive_data_acceptance] if case.operation.label == "POST /v1/people" else []),
        ],
    )


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_without_credentials_is_refused_not_broken(case: Any, base_url: str) -> None:
    response = case.call(base_url=base_url, headers={"Authorization": "Bearer forged"})
    assert response.status_code < 500
    if case.path.startswith("/v1/media/"):  # public: the URL carries its own signature, never valid here
        if case.method == "OPTIONS":  # RFC 9110: which methods there are (Allow), nothing else
            allow = {k.lower(): v for k, v in response.headers.items()}["allow"]
            assert response.status_code == 200 and not response.content and "GET" in str(allow)
        else:
            assert 400 <= response.status_code < 500 and response.status_code != 401, response.request.url
    elif case.path == "/v1/session" and case.method == "POST":  # its credential is the body's ID token
        assert response.status_code in (400, 401), response.request.url
    elif case.path.startswith("/v1/"):
        assert response.status_code == 401


def test_unknown_query_parameters_are_refused(base_url: str) -> None:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'default')}"}
    typo = requests.get(f"{base_url}/v1/search", params={"query": "lighthouse"}, headers=headers, timeout=30)
    assert typo.status_code == 400 and "query" in typo.json()["error"]
    assert typo.json()["code"] == "invalid_parameter"
    extra = requests.get(f"{base_url}/v1/assets", params={"lmit": "5"}, headers=headers, timeout=30)
    assert extra.status_code == 400 and extra.json()["code"] == "invalid_parameter"
    twice = requests.get(f"{base_url}/v1/search?q=a&q=b", headers=headers, timeout=30)
    assert twice.status_code == 400 and "repeated" in twice.json()["error"]
