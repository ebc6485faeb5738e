"""Cloud Function (gen2, HTTP): Drive push notifications, channel renewal, folder registration, and
the scheduled sweep of stuck jobs (/sweep)."""

import flask
import functions_framework

from heimdex import logs
from heimdex.api import errors
from heimdex.cloud import functions as cloud

logs.setup("INFO")
cloud.settings()  # bad settings (a short secret, an invalid organisation) stop the instance at start-up
errors.install(functions_framework.errorhandler)  # JSON errors from the framework's own app too


@functions_framework.http
def drive_watch(request: flask.Request) -> flask.Response:
    response: flask.Response = cloud.serve_http("drive_watch", request)
    return response
