"""Cloud Tasks dispatch: one queue per stage, one HTTP task per (job, task), OIDC to the stage service.

A segment of long media is a task of its own (`asr_3`: the body carries `"part": 3`), so the
segments of one file run on as many Cloud Run instances as the stage scales to. Task names derive
from (job, task), so Cloud Tasks itself drops a duplicate enqueue; the job
store's exactly-once fan-in means a duplicate is rare to begin with. Stage URLs come from settings
or, in the cloud, from the Cloud Run service `heimdex-<stage>` (google-cloud-run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from heimdex.config import Settings
from heimdex.core.graph import parse_task_key
from heimdex.domain import AssetRef, validate_org

log = logging.getLogger(__name__)

# How long Cloud Tasks waits for a stage to answer before it counts the attempt as failed: the most
# it allows for HTTP targets, matching the longest stage request timeout (terraform stage_services).
DISPATCH_DEADLINE_S = 1800


def tasks_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


def task_payload(ref: AssetRef, part: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "org_id": ref.org_id,
        "asset_id": ref.asset_id,
        "source": ref.source,
        "version": ref.version,
    }
    if part is not None:
        payload["part"] = part
    return payload


def part_from_payload(payload: dict[str, Any]) -> int | None:
    """The time segment a task is for (None: the whole media); raises ValueError if malformed."""
    part = payload.get("part")
    if part is None:
        return None
    if isinstance(part, bool) or not isinstance(part, int) or part < 0:
        raise ValueError(f"part must be a non-negative integer, not {part!r}")
    return part


def ref_from_payload(payload: dict[str, Any]) -> AssetRef:
    """The asset of a task; raises KeyError/TypeError/ValueError if malformed (strings without NUL,
    a valid organisation)."""
    fields = [payload["org_id"], payload["asset_id"], payload["source"], payload["version"]]
    if not all(isinstance(f, str) and "\x00" not in f for f in fields):
        raise ValueError("org_id, asset_id, source and version must be strings without NUL")
    return AssetRef(validate_org(fields[0]), fields[1], fields[2], fields[3])


class CloudTasksDispatcher:
    def __init__(self, settings: Settings, client: tasks_v2.CloudTasksClient | None = None) -> None:
        if not settings.project:
            raise ValueError("HEIMDEX_PROJECT is required for Cloud Tasks dispatch")
        self.settings = settings
        self.project: str = settings.project
        self.client = client or tasks_client(settings)
        self.location = settings.tasks_location or settings.region
        self._urls: dict[str, str] = dict(settings.stage_urls)
        self._lock = threading.Lock()

    def queue_path(self, stage: str) -> str:
        return self.client.queue_path(
            self.project, self.location, f"{self.settings.tasks_queue_prefix}{stage}"
        )

    def stage_url(self, stage: str) -> str:
        with self._lock:
            if stage not in self._urls:
                from google.cloud import run_v2

                name = (
                    f"projects/{self.settings.project}/locations/{self.settings.region}"
                    f"/services/heimdex-{stage}"
                )
                self._urls[stage] = run_v2.ServicesClient().get_service(name=name).uri
            return self._urls[stage]

    def ensure_queues(self, stages: list[str]) -> None:
        parent = f"projects/{self.settings.project}/locations/{self.location}"
        for stage in stages:
            with contextlib.suppress(gexc.AlreadyExists):
                self.client.create_queue(parent=parent, queue=tasks_v2.Queue(name=self.queue_path(stage)))

    def enqueue(self, ref: AssetRef, key: str) -> None:
        """Enqueue task `key` (a stage, or a stage's segment such as `asr_3`) on its stage's queue."""
        stage, part = parse_task_key(key)
        url = self.stage_url(stage)
        request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(task_payload(ref, part)).encode(),
        }
        if self.settings.tasks_invoker_email:
            request["oidc_token"] = {
                "service_account_email": self.settings.tasks_invoker_email,
                "audience": url,
            }
        task = tasks_v2.Task(
            dispatch_deadline=duration_pb2.Duration(seconds=DISPATCH_DEADLINE_S),
            name=f"{self.queue_path(stage)}/tasks/{ref.job_id}-{key}",
            http_request=tasks_v2.HttpRequest(**request),
        )
        try:
            self.client.create_task(parent=self.queue_path(stage), task=task)
        except gexc.AlreadyExists:
            log.info("task exists already", extra={"job": ref.job_id, "stage": key})
