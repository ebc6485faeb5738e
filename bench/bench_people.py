"""The person filter at scale: search latency with `person=` over N faces in the real schema.

    make bench-search                   # also runs this: 100,000 faces
    FACES=300000 python -m bench.bench_people

One organisation gets SCENES scenes (default 100,000: 2,000 videos of 50) and FACES face tracks
(default 100,000) grouped into PEOPLE people (default 2,000): log-normal sizes (most people are
seen a few times, some often) and one presenter with 5% of all faces, plus a second organisation of the same
size, so row-level security and the organisation filter have work to do. Faces are loaded with
COPY into .bench/people-{FACES}/ (kept: a re-run skips the load). Queries run through the
product's code inside db.org_tx, as Engine.search does: heimdex.vectorstore.people.search_people,
then people_in_scenes for the hits' `people`. Five kinds, QUERIES each (default 200): one person
and no query (their appearances), one person with a query (ranked), two people together, each with
people drawn by their number of faces (a popular person is asked for more often); and the presenter
(5% of all faces) alone, without and with a query. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from heimdex.config import Settings
from heimdex.vectorstore import people as people_store
from heimdex.vectorstore.db import Database
from heimdex.vectorstore.search import RRF_K, or_query

ROOT = Path(__file__).resolve().parent.parent
ORGS = ("bench-people", "bench-people-other")
SCENES_PER_VIDEO = 50


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(db: Database, org: str, scenes: int, faces: int, people: int, rng: np.random.Generator) -> list[int]:
    """Assets, scenes, people and faces of one organisation; returns each person's face count."""
    videos = scenes // SCENES_PER_VIDEO
    # Log-normal sizes (most people seen a few times, some often) plus one presenter with 5% of faces.
    sizes = rng.lognormal(0.0, 1.2, people)
    sizes[0] = 0.0
    sizes = sizes / sizes.sum() * faces * 0.95
    sizes[0] = faces * 0.05
    counts = np.maximum(1, np.round(sizes)).astype(int)
    centroids = rng.normal(size=(people, 128)).astype(np.float32) * 0.1
    # As the owner (a superuser in the embedded server): COPY FROM is refused under row-level security.
    with psycopg.connect(db.url) as conn:
        with conn.cursor().copy(
            "COPY assets (org_id, asset_id, source, version, status, scenes) FROM STDIN"
        ) as cp:
            for v in range(videos):
                cp.write_row((org, f"a{v:06d}", f"/bench/{org}/{v:06d}.mp4", "1", "ready", SCENES_PER_VIDEO))
        with conn.cursor().copy(
            "COPY scenes (org_id, asset_id, idx, source, start_s, end_s, transcript) FROM STDIN"
        ) as cp:
            for v in range(videos):
                for i in range(SCENES_PER_VIDEO):
                    cp.write_row(
                        (org, f"a{v:06d}", i, f"/bench/{org}/{v:06d}.mp4", i * 6.0, i * 6.0 + 6, "words")
                    )
        ids = [
            people_store.new_person(conn, org, f"Person {p}" if p % 3 == 0 else None) for p in range(people)
        ]
        with conn.cursor().copy(
            "COPY faces (org_id, asset_id, start_s, end_s, scene_lo, scene_hi, quality, embedding, person_id)"
            " FROM STDIN"
        ) as cp:
            for p, n in enumerate(counts):
                # A person's appearances cluster in some videos (a series), as in real archives.
                home_videos = rng.integers(0, videos, size=max(1, n // 20 + 1))
                for _ in range(n):
                    v = int(rng.choice(home_videos)) if rng.random() < 0.8 else int(rng.integers(0, videos))
                    idx = int(rng.integers(0, SCENES_PER_VIDEO))
                    hi = min(SCENES_PER_VIDEO - 1, idx + int(rng.random() < 0.2))
                    vec = centroids[p] + rng.normal(size=128).astype(np.float32) * 0.03
                    cp.write_row(
                        (org, f"a{v:06d}", idx * 6.0, idx * 6.0 + 3, idx, hi, 0.5, vector_text(vec), ids[p])
                    )
        conn.execute("ANALYZE faces")
        conn.execute("ANALYZE scenes")
    return counts.tolist()


def vector_text(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.5f}" for x in vec) + "]"


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def main() -> None:
    faces = int(os.environ.get("FACES", "100000"))
    scenes = int(os.environ.get("SCENES", "100000"))
    people = int(os.environ.get("PEOPLE", "2000"))
    nq = int(os.environ.get("QUERIES", "200"))
    rng = np.random.default_rng(int(os.environ.get("SEED", "7")))
    # v3: the schema with main's 007-009 (scene units, languages) before 010_people.
    home = ROOT / ".bench" / f"people-v3-{faces}-{scenes}-{people}"
    home.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(home=home, database_url=None))
    meta = home / "loaded.json"
    try:
        if meta.exists():
            counts = json.loads(meta.read_text())
        else:
            started = time.perf_counter()
            counts = {org: load(db, org, scenes, faces, people, rng) for org in ORGS}
            meta.write_text(json.dumps(counts))
            took = time.perf_counter() - started
            say(f"loaded {faces:,} faces and {scenes:,} scenes per organisation in {took:.0f}s")
        org = ORGS[0]
        with db.org_tx(org) as conn:
            ids = [int(r[0]) for r in conn.execute("SELECT person_id FROM people ORDER BY person_id")]
            total = conn.execute("SELECT count(*) FROM faces").fetchone()
        weights = np.asarray(counts[org], dtype=np.float64)
        weights /= weights.sum()
        top = ids[int(np.argmax(weights))]
        text_vec = rng.normal(size=384).astype(np.float32)
        text_vec /= np.linalg.norm(text_vec)

        def run(kind: str) -> dict[str, float]:
            times: list[float] = []
            hits: list[int] = []
            for q in range(nq + 20):  # 20 warm-up queries
                first = top if kind.startswith("presenter") else int(rng.choice(ids, p=weights))
                pick = [first]
                if kind == "two people":
                    pick.append(int(rng.choice(ids, p=weights)))
                query = "words archive" if kind.endswith("with query") else ""
                started = time.perf_counter()
                with db.org_tx(org) as conn:
                    rows = people_store.search_people(
                        conn,
                        org,
                        [[p] for p in pick],
                        k=10,
                        query=query,
                        or_q=or_query(query),
                        text_vec=text_vec,
                        text_model="st:bench",
                        rrf_k=RRF_K,
                    )
                    people_store.people_in_scenes(conn, org, [(r["asset_id"], r["idx"]) for r in rows])
                if q >= 20:
                    times.append((time.perf_counter() - started) * 1000)
                    hits.append(len(rows))
            return {
                "p50_ms": round(pct(times, 50), 2),
                "p95_ms": round(pct(times, 95), 2),
                "max_ms": round(max(times), 2),
                "mean_hits": round(statistics.mean(hits), 1),
            }

        kinds = ("appearances", "with query", "two people", "presenter", "presenter with query")
        results = {kind: run(kind) for kind in kinds}
    finally:
        db.close()
    for kind, fig in results.items():
        say(f"{kind:<12} p50 {fig['p50_ms']:7.2f} ms  p95 {fig['p95_ms']:7.2f} ms  hits {fig['mean_hits']}")
    print(
        json.dumps(
            {
                "faces": int(total[0]) if total else 0,
                "scenes": scenes,
                "people": people,
                "top_person_faces": max(counts[org]),
                "organisations": len(ORGS),
                "queries": nq,
                "results": results,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
