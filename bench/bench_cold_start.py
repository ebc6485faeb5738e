"""Cold start of the search entry point, this checkout (queries on ONNX Runtime) against the torch
baseline (bench/baseline.py), in the same run, starts interleaved:

- a new functions-framework process serving `functions/search`, from process start to its port and to
  its first search result, the latency of that first request, memory after it (`rss_mb`: resident
  set of the worker that served; `tree_pss_mb`: gunicorn's arbiter and worker together, pages they
  share counted once), and 20 warm queries;
- `heimdex search` as a new CLI process (`python -m heimdex.cli search ...`), wall time, with the
  embedded database already running.

    make bench-cold                  # 3 starts of each
    COLD_RUNS=5 VARIANTS=onnx make bench-cold

The database is an embedded PostgreSQL started and migrated beforehand (as Cloud SQL is already
running when an instance starts), with an empty index: the figure is the instance's own start-up
(imports, connection pool, model load) plus one query (search at scale is bench_search's subject).
The last line is one JSON object: medians per variant, and baseline / this checkout ratios.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import baseline
from heimdex import logs
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.dev.emulators import free_port
from heimdex.vectorstore.db import Database

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-cold-secret-0123456789abcdef0123456789"
WARM_QUERIES = 20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process tree has used so far: steadier than wall time on a
    shared, loaded machine, where a process waits for a core."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS of the largest process of the tree: the worker that served, PSS of the whole tree: what
    the instance holds, pages shared by the fork counted once)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = max(p.memory_info().rss for p in procs)
    pss = sum(p.memory_full_info().pss for p in procs)
    return rss / 2**20, pss / 2**20


def one_start(variant: str, env: dict[str, str], token: str) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/search"
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", "search", "--port", str(port)],
        cwd=baseline.tree(variant) / "functions" / "search",
        env=baseline.env_for(variant, env),
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
        rss, pss = memory_mb(proc.pid)
        cpu = cpu_s(proc.pid)
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
            "first_result_cpu_s": cpu,
            "rss_mb": rss,
            "tree_pss_mb": pss,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cli_search(variant: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU seconds of `heimdex search` in a new process (the database is running)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "heimdex.cli", "search", "harbour fire after midnight", "--k", "10"],
        env=baseline.env_for(variant, env),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=300,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(variants: list[str], runs: int) -> dict[str, Any]:
    (ROOT / ".bench").mkdir(exist_ok=True)  # a fresh clone has none yet
    home = Path(tempfile.mkdtemp(prefix="heimdex-cold-", dir=ROOT / ".bench"))
    settings = Settings(home=home, database_url=None, jwt_secret=SECRET)
    db = Database(settings)  # the embedded server, started (and migrated) before the instance
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(HEIMDEX_HOME=str(home), HEIMDEX_JWT_SECRET=SECRET)
    function_envs, cli_envs = {}, {}
    for variant in variants:
        owner_url, app_url = baseline.database(db.url, db.app_url, variant, env)
        function_envs[variant] = {**env, "HEIMDEX_DATABASE_APP_URL": app_url}
        cli_envs[variant] = env if variant == "onnx" else {**env, "HEIMDEX_DATABASE_URL": owner_url}
    token = issue_token(SECRET, "default")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        for i in range(runs):
            for variant in variants:  # interleaved: the machine's load falls on both alike
                found = one_start(variant, function_envs[variant], token)
                found["cli_search_s"], found["cli_search_cpu_s"] = cli_search(variant, cli_envs[variant])
                results[variant].append(found)
                print(
                    f"{variant} start {i + 1}: listening {found['listening_s']:.2f}s, first result "
                    f"{found['first_result_s']:.2f}s (first request {found['first_request_ms']:.0f} ms), "
                    f"warm p50 {found['warm_p50_ms']:.0f} ms, RSS {found['rss_mb']:.0f} MB, "
                    f"CLI search {found['cli_search_s']:.2f}s ({found['cli_search_cpu_s']:.2f} CPU s)",
                    file=sys.stderr,
                )
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)  # its database (~45 MB a run)
    figures: dict[str, Any] = {"runs": runs}
    for variant, rows in results.items():
        figures[variant] = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    if "onnx" in figures and "torch" in figures:
        figures["torch_over_onnx"] = {
            k: round(figures["torch"][k] / max(figures["onnx"][k], 1e-9), 2) for k in figures["onnx"]
        }
    return figures


def main() -> None:
    logs.setup("WARNING")
    runs = int(os.environ.get("COLD_RUNS", "3"))
    variants = os.environ.get("VARIANTS", "onnx,torch").split(",")
    load_before = os.getloadavg()
    figures = measure(variants, runs)
    figures["loadavg_before"] = [round(x, 2) for x in load_before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["cpus"] = os.cpu_count()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
