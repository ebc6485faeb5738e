"""A local stand-in for Eventarc: Pub/Sub push (GCS notifications) in, CloudEvents out.

fake-gcs-server publishes object notifications to the Pub/Sub emulator in the JSON API format;
the emulator pushes them here; this turns each into the binary-mode CloudEvent that Eventarc would
deliver to the ingest function (`google.cloud.storage.object.v1.finalized` / `.deleted`).
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import requests
from flask import Flask, request

EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
}


def cloudevent_headers(message: dict[str, Any], data: dict[str, Any]) -> dict[str, str] | None:
    kind = EVENT_TYPES.get(message.get("attributes", {}).get("eventType", ""))
    if kind is None:
        return None
    return {
        "ce-specversion": "1.0",
        "ce-id": str(message.get("messageId") or message.get("message_id")),
        "ce-type": kind,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{data.get('bucket')}",
        "ce-subject": f"objects/{data.get('name')}",
        "ce-time": str(data.get("updated") or data.get("timeCreated") or ""),
        "Content-Type": "application/json",
    }


def create_app(target: str) -> Flask:
    app = Flask("heimdex-eventarc")

    @app.post("/")
    def push() -> Any:
        message = (request.get_json(silent=True) or {}).get("message", {})
        data = json.loads(base64.b64decode(message.get("data", "")) or b"{}")
        headers = cloudevent_headers(message, data)
        if headers is None:
            return "", 204  # an event type the ingest function does not subscribe to
        resp = requests.post(target, data=json.dumps(data), headers=headers, timeout=120)
        return "", 204 if resp.ok else 502  # non-2xx: Pub/Sub redelivers

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="URL of the ingest function")
    args = parser.parse_args()
    import waitress

    waitress.serve(create_app(args.target), host="127.0.0.1", port=args.port, threads=4)


if __name__ == "__main__":
    main()
