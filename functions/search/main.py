"""Cloud Function (gen2, HTTP): the authenticated search API (/v1/search, /v1/assets, /v1/jobs/{id})."""

import flask
import functions_framework

from heimdex import logs
from heimdex.api import errors
from heimdex.cloud import functions as cloud

logs.setup("INFO")
cloud.settings()  # bad settings (a short secret, an invalid organisation) stop the instance at start-up
errors.install(functions_framework.errorhandler)  # JSON errors from the framework's own app too
cloud.warm_search()  # instance start-up, not the first request, imports the model libraries


@functions_framework.http
def search(request: flask.Request) -> flask.Response:
    response: flask.Response = cloud.serve_http("search", request)
    return response
