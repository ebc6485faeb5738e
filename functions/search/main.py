"""Cloud Function (gen2, HTTP): the authenticated search API (/v1/search, /v1/assets, /v1/jobs/{id})."""

import flask
import functions_framework

from heimdex import cloud, logs
from heimdex.api.app import create_app

logs.setup("INFO")
_app = None


@functions_framework.http
def search(request: flask.Request) -> flask.Response:
    global _app
    if _app is None:
        _app = create_app(cloud.engine())
    with _app.request_context(request.environ):
        return _app.full_dispatch_request()
