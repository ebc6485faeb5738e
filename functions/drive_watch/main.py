"""Cloud Function (gen2, HTTP): Drive push notifications, channel renewal, folder registration."""

import flask
import functions_framework

from heimdex import cloud, logs
from heimdex.api.drive_watch import create_drive_app

logs.setup("INFO")
_app = None


@functions_framework.http
def drive_watch(request: flask.Request) -> flask.Response:
    global _app
    if _app is None:
        _app = create_drive_app(cloud.engine(), cloud.dispatcher(), cloud.drive_watcher())
    with _app.request_context(request.environ):
        return _app.full_dispatch_request()
