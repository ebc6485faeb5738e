"""Search under load: N concurrent clients on the served HTTP API for a fixed time, this checkout (queries
on ONNX Runtime) and the torch baseline (bench/baseline.py) one after the other on the same corpus.

    make bench-load                               # 100,000 scenes, 8 clients, 20 s each
    SCENES=100000 CLIENTS=16 DURATION_S=30 make bench-load
    VARIANTS=onnx make bench-load                 # this checkout only

The scenes are bench_search's synthetic corpus (organisations of very different sizes, structured
vectors, transcripts), loaded once into .bench/load-{N}-s{SEED}/ and reused. The API is the real one
(`heimdex.api.app` on waitress, HS256 tokens, row-level security), served by a process of its own
(bench/serve_api.py) with the variant's package: this checkout with its settled server (threads
HEIMDEX_SERVE_THREADS, pool HEIMDEX_DB_POOL_SIZE), the baseline as it was benchmarked (a thread and a
pooled connection per client, plus two). Every request embeds its query (the query cache is off:
HEIMDEX_QUERY_CACHE_SIZE=0, so a repeated query costs what a new one does) and runs the hybrid SQL.
Clients are threads of this process sending to 127.0.0.1, each request for a random organisation's
token, for DURATION_S seconds after a 3 s warm-up. The last line is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests

from bench import baseline
from bench import bench_search as bs
from heimdex import logs
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.embedded.engine import Engine
from heimdex.models import Models

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-load-secret-0123456789abcdef0123456789"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def prepare(scenes: int, seed: int) -> tuple[Path, list[tuple[str, str]], dict[str, str], Engine]:
    """The corpus in its home (loaded once); the work items and tokens; an engine that keeps the
    embedded server running while the variants come and go."""
    home = ROOT / ".bench" / f"load-{scenes}-s{seed}"
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, database_url=None, jwt_secret=SECRET)
    bs.TEXT_MODEL = Models(settings).text_name  # rows carry the served model's name: vectors take part
    corpus = bs.Corpus(scenes, seed)
    engine = Engine(settings)
    with psycopg.connect(engine.db.url, autocommit=True) as admin:
        bs.load(admin, corpus)
        bs.build_indexes(admin, "1GB", 1, settings.search_exact_max_rows)
        sizes = dict(admin.execute("SELECT org_id, count(*) FROM scenes GROUP BY org_id").fetchall())
    orgs = [bs.LARGEST_ORG, bs.ONE_PCT_ORG, *sorted(o for o in sizes if o not in bs.BIG_ORGS)[:6]]
    work = [(org, text) for org in orgs for text, _, _ in corpus.queries(org, 50)]
    tokens = {org: issue_token(SECRET, org, ttl_s=3600) for org in orgs}
    return home, work, tokens, engine


def start_server(variant: str, home: Path, threads: int, pool: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env["HEIMDEX_QUERY_CACHE_SIZE"] = "0"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "serve_api.py"), str(home), SECRET, str(threads), str(pool)],
        env=baseline.env_for(variant, env),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port:
        proc.wait(timeout=30)
        raise SystemExit(f"the {variant} server exited with {proc.returncode}")
    return proc, f"http://127.0.0.1:{port}/v1/search"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children (live ones)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def postmaster_pid(home: Path) -> int:
    pid_file = Settings(home=home).pgdata / "postmaster.pid"
    return int(pid_file.read_text().split()[0])


def drive(
    url: str,
    work: list[tuple[str, str]],
    tokens: dict[str, str],
    clients: int,
    duration: float,
    seed: int,
    pids: list[int] | None = None,
) -> dict[str, Any]:
    """Warm-up, then `clients` threads for `duration` seconds; the figures. With `pids` (the server
    and PostgreSQL), also the CPU they spent per request in the timed window: what a request costs,
    whatever share of the cores this machine's other work leaves the benchmark."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def client(n: int, until: float, record: bool) -> None:
        rng = random.Random(seed * 1000 + n)
        with requests.Session() as session:  # keep-alive: one connection per client
            while time.perf_counter() < until:
                org, text = rng.choice(work)
                started = time.perf_counter()
                try:
                    resp = session.get(
                        url,
                        params={"q": text, "k": 10},
                        timeout=30,
                        headers={"Authorization": f"Bearer {tokens[org]}"},
                    )
                    kind = (
                        None
                        if resp.status_code == 200 and "results" in resp.json()
                        else f"http {resp.status_code}"
                    )
                except requests.RequestException as exc:
                    kind = type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                if record:
                    with lock:
                        if kind:
                            errors[kind] = errors.get(kind, 0) + 1
                        else:
                            latencies.append(elapsed)

    def run(seconds: float, record: bool) -> float:
        until = time.perf_counter() + seconds
        threads = [threading.Thread(target=client, args=(n, until, record)) for n in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    run(3.0, record=False)
    cpu_before = cpu_seconds(pids or [])
    wall = run(duration, record=True)
    cpu_used = cpu_seconds(pids or []) - cpu_before
    done, failed = len(latencies), sum(errors.values())
    per_request_ms = cpu_used / max(done, 1) * 1000
    return {
        "cpu_ms_per_request": round(per_request_ms, 1),
        # Requests per second that two dedicated cores would serve at this CPU cost (no queueing).
        "two_core_capacity_rps": round(2000 / per_request_ms, 1) if per_request_ms else None,
        "requests": done + failed,
        "throughput_rps": round(done / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        "errors": failed,
        "error_kinds": errors,
        "duration_s": round(wall, 1),
    }


def measure(variants: list[str]) -> dict[str, Any]:
    """Each variant's figures under load, with the server settings it ran with."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queueing is what is measured here
    scenes = int(os.environ.get("SCENES", "100000"))
    clients = int(os.environ.get("CLIENTS", "8"))
    duration = float(os.environ.get("DURATION_S", "20"))
    seed = int(os.environ.get("SEED", "7"))
    home, work, tokens, engine = prepare(scenes, seed)
    settled = Settings()
    figures: dict[str, Any] = {"scenes": scenes, "clients": clients}
    try:
        for variant in variants:
            if variant == "onnx":
                threads = int(os.environ.get("THREADS", settled.serve_threads))
                pool = int(os.environ.get("POOL", max(settled.db_pool_size, threads)))
            else:
                threads, pool = clients, clients + 2
            proc, url = start_server(variant, home, threads, pool)
            try:
                print(f"{variant}: {clients} clients for {duration:g}s against {url} ...", file=sys.stderr)
                found = drive(url, work, tokens, clients, duration, seed, [proc.pid, postmaster_pid(home)])
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            figures[variant] = {"server_threads": threads, "db_pool": pool, **found}
            print(f"{variant}: {json.dumps(figures[variant])}", file=sys.stderr)
    finally:
        engine.close()
    if "onnx" in figures and "torch" in figures:
        on, to = figures["onnx"], figures["torch"]
        figures["throughput_x"] = round(on["throughput_rps"] / max(to["throughput_rps"], 1e-9), 2)
        figures["p95_ratio"] = round(on["p95_ms"] / max(to["p95_ms"], 1e-9), 3)
    return figures


def main() -> None:
    logs.setup("WARNING")
    variants = os.environ.get("VARIANTS", "onnx,torch").split(",")
    load_before = os.getloadavg()
    figures = measure(variants)
    figures["loadavg_before"] = [round(x, 2) for x in load_before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
