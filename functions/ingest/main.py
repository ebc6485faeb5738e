"""Cloud Function (gen2, CloudEvent): GCS object finalized/deleted -> ingest or remove."""

import functions_framework
from cloudevents.http import CloudEvent

from heimdex import cloud, logs

logs.setup("INFO")


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    # Always return normally for events we decided about (rejections included): raising would make
    # Eventarc redeliver an event that can never succeed. Infrastructure errors do raise, and retry.
    cloud.handle_storage_event(event["type"], event["id"], event.get_data() or {})
