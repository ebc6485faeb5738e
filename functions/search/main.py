"""Cloud Function (gen2, HTTP): the authenticated search API (/v1/search, /v1/assets, /v1/jobs/{id})."""

import os
from pathlib import Path

# The text model's ONNX export ships next to this file (`make functions-src` writes it): queries are
# encoded with ONNX Runtime, and the function installs no torch.
_EXPORT = Path(__file__).with_name("text-onnx")
if _EXPORT.is_dir():
    os.environ.setdefault("HEIMDEX_TEXT_ONNX", str(_EXPORT))

import flask  # noqa: E402
import functions_framework  # noqa: E402

from heimdex import logs  # noqa: E402
from heimdex.api import errors  # noqa: E402
from heimdex.cloud import functions as cloud  # noqa: E402

logs.setup("INFO")
cloud.settings()  # bad settings (a short secret, an invalid organisation) stop the instance at start-up
errors.install(functions_framework.errorhandler)  # JSON errors from the framework's own app too
cloud.warm_search()  # instance start-up, not the first request: the encoder's libraries, its export


@functions_framework.http
def search(request: flask.Request) -> flask.Response:
    response: flask.Response = cloud.serve_http("search", request)
    return response
