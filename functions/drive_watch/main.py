"""Cloud Function (gen2, HTTP): Drive push notifications, channel renewal, folder registration, and
the scheduled sweep of stuck jobs (/sweep)."""

import flask
import functions_framework

from heimdex import cloud, logs

logs.setup("INFO")


@functions_framework.http
def drive_watch(request: flask.Request) -> flask.Response:
    response: flask.Response = cloud.serve_http("drive_watch", request)
    return response
