"""Cold start of the search entry point: a new functions-framework process serving `functions/search`,
from process start to its first search result, and the latency of that first request.

    make bench-cold                  # 3 starts
    COLD_RUNS=5 make bench-cold

The database is an embedded PostgreSQL started and migrated beforehand (as Cloud SQL is already
running when an instance starts), with an empty index: the figure is the instance's own start-up
(imports, connection pool, MiniLM load) plus one query (search at scale is bench_search's subject).
The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from heimdex import logs
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.dev.emulators import free_port
from heimdex.vectorstore.db import Database

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-cold-secret-0123456789abcdef0123456789"
WARM_QUERIES = 20


def one_start(env: dict[str, str], token: str) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/search"
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", "search", "--port", str(port)],
        cwd=ROOT / "functions" / "search",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:  # the port opens once the module (and its warm-up) has been imported
            if proc.poll() is not None:
                raise SystemExit(f"the search function exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        listening = time.perf_counter() - started
        sent = time.perf_counter()
        resp = requests.get(url, params={"q": "harbour fire", "k": 10}, headers=headers, timeout=120)
        resp.raise_for_status()
        first_ms = (time.perf_counter() - sent) * 1000
        total = time.perf_counter() - started
        warm = []
        for i in range(WARM_QUERIES):
            sent = time.perf_counter()
            requests.get(url, params={"q": f"bridge vote {i}", "k": 10}, headers=headers, timeout=30)
            warm.append((time.perf_counter() - sent) * 1000)
        return {
            "listening_s": listening,
            "first_result_s": total,
            "first_request_ms": first_ms,
            "warm_p50_ms": statistics.median(warm),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    logs.setup("WARNING")
    runs = int(os.environ.get("COLD_RUNS", "3"))
    home = Path(tempfile.mkdtemp(prefix="heimdex-cold-", dir=ROOT / ".bench"))
    settings = Settings(home=home, database_url=None, jwt_secret=SECRET)
    db = Database(settings)  # the embedded server, started (and migrated) before the instance
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(HEIMDEX_HOME=str(home), HEIMDEX_DATABASE_APP_URL=db.app_url, HEIMDEX_JWT_SECRET=SECRET)
    try:
        results = [one_start(env, issue_token(SECRET, "default")) for _ in range(runs)]
    finally:
        db.close()
    for i, r in enumerate(results, 1):
        print(
            f"start {i}: listening {r['listening_s']:.2f}s, first result {r['first_result_s']:.2f}s "
            f"(first request {r['first_request_ms']:.0f} ms), warm p50 {r['warm_p50_ms']:.0f} ms",
            file=sys.stderr,
        )
    figures = {name: round(statistics.median(r[name] for r in results), 3) for name in results[0]}
    print(json.dumps({"runs": runs, **figures, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
