"""Search under load: N concurrent clients on the served HTTP API for a fixed time.

    make bench-load                               # 100,000 scenes, 8 clients, 20 s
    SCENES=100000 CLIENTS=16 DURATION_S=30 make bench-load

The scenes are bench_search's synthetic corpus (organisations of very different sizes, structured
vectors, transcripts), loaded once into .bench/load-{N}-s{SEED}/ and reused. The API is the real one
(`heimdex.api.app` on waitress, HS256 tokens, row-level security): every request embeds its query with
MiniLM and runs the hybrid SQL. Clients are threads on this machine sending to 127.0.0.1, each for its
own organisation's token, for DURATION_S seconds after a short warm-up. The last line is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg
import requests
import waitress

from bench import bench_search as bs
from heimdex import logs
from heimdex.api.app import create_app
from heimdex.api.auth import issue_token
from heimdex.config import Settings
from heimdex.embedded.engine import Engine
from heimdex.models import Models

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-load-secret-0123456789abcdef0123456789"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def main() -> None:
    logs.setup("WARNING")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queueing is what is measured here
    scenes = int(os.environ.get("SCENES", "100000"))
    clients = int(os.environ.get("CLIENTS", "8"))
    duration = float(os.environ.get("DURATION_S", "20"))
    seed = int(os.environ.get("SEED", "7"))
    home = ROOT / ".bench" / f"load-{scenes}-s{seed}"
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, database_url=None, jwt_secret=SECRET, db_pool_size=clients + 2)

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

    server = waitress.create_server(create_app(engine), host="127.0.0.1", port=0, threads=clients)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/v1/search"

    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def client(n: int, until: float, record: bool) -> None:
        rng = random.Random(seed * 1000 + n)
        with requests.Session() as session:
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

    try:
        print(f"warm-up, then {clients} clients for {duration:g}s against {url} ...", file=sys.stderr)
        run(3.0, record=False)
        wall = run(duration, record=True)
    finally:
        server.close()
        engine.close()

    done = len(latencies)
    failed = sum(errors.values())
    figures = {
        "scenes": scenes,
        "clients": clients,
        "duration_s": round(wall, 1),
        "requests": done + failed,
        "throughput_rps": round(done / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        "errors": failed,
        "error_kinds": errors,
    }
    print(
        f"\n{'requests':<12}{figures['requests']:>10}\n{'rps':<12}{figures['throughput_rps']:>10}"
        f"\n{'p50 ms':<12}{figures['p50_ms']:>10}\n{'p95 ms':<12}{figures['p95_ms']:>10}"
        f"\n{'p99 ms':<12}{figures['p99_ms']:>10}\n{'errors':<12}{failed:>10}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
