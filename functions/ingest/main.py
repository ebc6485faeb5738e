"""Cloud Function (gen2, CloudEvent): GCS object finalized/deleted -> ingest or remove."""

import flask
import functions_framework
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent

from heimdex import logs
from heimdex.api import errors
from heimdex.cloud import functions as cloud

logs.setup("INFO")
cloud.require_source_buckets(cloud.settings())  # bad or missing settings stop the instance at start-up
errors.install(functions_framework.errorhandler)  # JSON errors from the framework's own app too
functions_framework.errorhandler(GenericException)(cloud.malformed_event)


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    # Events we decided about, rejections included, are answered 200: Eventarc redelivers anything
    # else, and an event that can never be handled would come back forever. Infrastructure errors
    # raise (a JSON 500), and are retried. The framework answers "OK" whatever a cloudevent function
    # returns, so the outcome is raised as the response.
    outcome = cloud.handle_storage_event(event["type"], event["id"], event.get_data())
    flask.abort(flask.jsonify(outcome))
