"""Search at scale: hybrid search latency and recall@10 over N synthetic scenes in the real schema.

    make bench-search                       # 1,000,000 scenes
    SCENES=200000 make bench-search

N scenes (SCENES, default 1,000,000; SEED, default 7) are loaded with binary COPY into the Heimdex
schema (migrations run through heimdex.vectorstore.db.Database) under .bench/search-{N}-s{SEED}/, which is
kept: a re-run with the same N and seed skips the load and every index already built, and an
interrupted load resumes at the last committed chunk. The data has structure, as real embeddings do:
2,000 topics with 8 subtopics each; a scene's text vector (384-d) and image vector (512-d) are its
topic centroid + subtopic + a per-video offset + noise, normalised; transcripts mix common words
(Zipf) with their topic's keywords. Organisations have very different sizes: four big ones (35%,
20%, 12%, 8% of rows), one holding 1%, the rest spread over 400 small ones; videos of all
organisations are interleaved in the table, as they would be after months of ingest.

The product's indexes are rebuilt after the load: the GIN index on the tsvector (the definition
the migrations made), then the dedicated indexes that heimdex.vectorstore.orgindex.ensure() gives every
organisation above HEIMDEX_SEARCH_EXACT_MAX_ROWS scenes (partial HNSW and GIN indexes over its own
rows; migration 003 has no shared graph, 004 searches keywords through the organisation's own GIN);
build time and size are reported. Queries (QUERIES, default 200, near the same topics, with 2-3
keywords) run through the product's own code: heimdex.vectorstore.search.search inside db.org_tx, with
the product's settings (HEIMDEX_SEARCH_EF_SEARCH, HEIMDEX_SEARCH_EXACT_MAX_ROWS), as Engine.search
does, for the largest organisation ("overall", graph path), the 1% organisation ("filtered") and
the smallest organisation above the exact limit ("mid", graph path). Recall@10 compares each top 10
with the same fusion computed with exact vector distances (ORDER BY distance + 0: no vector index).
Where the float32 run's exact answers are cached (DATA_VERSION 1, same corpus and queries), recall
against float32 is reported too: what halfvec costs. The queries run first on the server this run
started (warmed by heimdex.vectorstore.prewarm), then again on the same server once it has been
serving (`warm_*` figures). The last line printed is one JSON object with
every figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psycopg

from heimdex import logs
from heimdex.config import Settings
from heimdex.vectorstore import orgindex
from heimdex.vectorstore import prewarm as prewarm_mod
from heimdex.vectorstore import search as search_mod
from heimdex.vectorstore.db import Database

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
DATA_VERSION = 2  # bump when the generator or the schema changes: a new directory (2: halfvec, 003)

TEXT_DIM, IMAGE_DIM = 384, 512
TOPICS, SUBTOPICS = 2000, 8
GENERAL_WORDS, KEYWORD_POOL, KEYWORDS_PER_TOPIC = 6000, 40000, 25
TEXT_MODEL, IMAGE_MODEL = "bench-minilm-384", "bench-clip-512"
K = 10
CHUNK_ROWS = 20000
BIG_ORGS = {"big-a": 0.35, "big-b": 0.20, "big-c": 0.12, "big-d": 0.08}
ONE_PCT_ORG = "one-pct"
SMALL_ORGS = 400
LARGEST_ORG = "big-a"

SCENE_COLUMNS = (
    "org_id, asset_id, idx, source, start_s, end_s, transcript, text_vec, image_vec, text_model, image_model"
)
# The product's own index on scenes besides its keys (migrations 001-003), dropped for the load and
# rebuilt after it from the definition the migrations made (kept in bench_meta), then the dedicated
# per-organisation HNSW indexes that heimdex.vectorstore.orgindex.ensure() makes.
INDEXES = ("scenes_tsv",)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the synthetic corpus ---------------------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def pseudo_words(rng: np.random.Generator, n: int, avoid: set[str]) -> list[str]:
    """Distinct made-up words (no English stop words, no accidental stems of each other's forms)."""
    onsets = [*"bdfgklmnprstvz", "br", "dr", "gl", "kr", "pl", "st", "tr", "sh", "ch", "th"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    words: list[str] = []
    seen = set(avoid)
    while len(words) < n:
        syl = int(rng.integers(2, 5))
        w = "".join(
            onsets[int(rng.integers(len(onsets)))] + vowels[int(rng.integers(len(vowels)))]
            for _ in range(syl)
        )
        w += "nrlxkm"[int(rng.integers(6))]
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def zipf_p(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


class Corpus:
    """Deterministic in (scenes, seed): every chunk of rows, and the queries, can be regenerated."""

    def __init__(self, scenes: int, seed: int) -> None:
        self.n, self.seed = scenes, seed
        rng = np.random.default_rng(seed)
        self.text_c = unit(rng.standard_normal((TOPICS, TEXT_DIM)))
        self.text_s = unit(rng.standard_normal((TOPICS, SUBTOPICS, TEXT_DIM)))
        self.img_c = unit(rng.standard_normal((TOPICS, IMAGE_DIM)))
        self.img_s = unit(rng.standard_normal((TOPICS, SUBTOPICS, IMAGE_DIM)))
        self.general = np.array(pseudo_words(rng, GENERAL_WORDS, set()), dtype=object)
        self.keywords = np.array(pseudo_words(rng, KEYWORD_POOL, set(self.general)), dtype=object)
        self.topic_kw = rng.integers(0, KEYWORD_POOL, size=(TOPICS, KEYWORDS_PER_TOPIC))
        self.general_p = zipf_p(GENERAL_WORDS, 1.1)
        self.kw_p = zipf_p(KEYWORDS_PER_TOPIC, 0.9)
        self.assets = self._assets(rng)

    def _assets(self, rng: np.random.Generator) -> list[tuple[str, str, int, np.ndarray]]:
        """(org, asset_id, scene count, 3 topics) per video, interleaved across organisations."""
        quotas = {org: round(self.n * f) for org, f in BIG_ORGS.items()}
        quotas[ONE_PCT_ORG] = round(self.n * 0.01)
        rest = self.n - sum(quotas.values())
        w = zipf_p(SMALL_ORGS, 0.8)
        small = np.floor(w * rest).astype(int)
        small[: rest - small.sum()] += 1
        for i, q in enumerate(small):
            if q:
                quotas[f"small-{i:03d}"] = int(q)
        assets = []
        for org, quota in quotas.items():
            left, j = quota, 0
            while left > 0:
                size = min(left, int(rng.integers(20, 200)))
                assets.append((org, f"{org}-v{j:05d}", size, rng.integers(0, TOPICS, size=3)))
                left -= size
                j += 1
        order = rng.permutation(len(assets))
        return [assets[i] for i in order]

    def chunks(self) -> Iterator[list[tuple[str, str, int, np.ndarray]]]:
        chunk: list[tuple[str, str, int, np.ndarray]] = []
        rows = 0
        for a in self.assets:
            chunk.append(a)
            rows += a[2]
            if rows >= CHUNK_ROWS:
                yield chunk
                chunk, rows = [], 0
        if chunk:
            yield chunk

    def rows(self, chunk_no: int, chunk: list[tuple[str, str, int, np.ndarray]]) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, 1, chunk_no])
        sizes = np.array([a[2] for a in chunk])
        n = int(sizes.sum())
        owner = np.repeat(np.arange(len(chunk)), sizes)
        which = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
        topics = np.array([a[3] for a in chunk])[owner, which]
        subs = rng.integers(0, SUBTOPICS, size=n)
        a_text = unit(rng.standard_normal((len(chunk), TEXT_DIM)))[owner]
        a_img = unit(rng.standard_normal((len(chunk), IMAGE_DIM)))[owner]
        text = unit(
            self.text_c[topics]
            + 0.7 * self.text_s[topics, subs]
            + 0.45 * a_text
            + 0.45 * unit(rng.standard_normal((n, TEXT_DIM)))
        )
        image = unit(
            self.img_c[topics]
            + 0.7 * self.img_s[topics, subs]
            + 0.55 * a_img
            + 0.45 * unit(rng.standard_normal((n, IMAGE_DIM)))
        )
        lengths = rng.integers(18, 45, size=n)
        total = int(lengths.sum())
        general = self.general[rng.choice(GENERAL_WORDS, size=total, p=self.general_p)]
        kw_slot = rng.random(total) < 0.3
        kw_rank = rng.choice(KEYWORDS_PER_TOPIC, size=total, p=self.kw_p)
        kw = self.keywords[self.topic_kw[np.repeat(topics, lengths), kw_rank]]
        words = np.where(kw_slot, kw, general)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        transcripts = [" ".join(words[s:e]) for s, e in zip(starts, ends, strict=True)]
        return {"owner": owner, "text": text, "image": image, "transcripts": transcripts}

    def queries(self, org: str, count: int, stream: int = 2) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Queries about what the organisation holds: a topic of one of its videos, a random subtopic."""
        rng = np.random.default_rng([self.seed, stream, sum(org.encode())])
        topics = np.concatenate([a[3] for a in self.assets if a[0] == org])
        out = []
        for _ in range(count):
            t, s = int(rng.choice(topics)), int(rng.integers(SUBTOPICS))
            qt = unit(self.text_c[t] + 0.7 * self.text_s[t, s] + 0.6 * unit(rng.standard_normal(TEXT_DIM)))
            qi = unit(self.img_c[t] + 0.7 * self.img_s[t, s] + 0.6 * unit(rng.standard_normal(IMAGE_DIM)))
            kws = self.keywords[self.topic_kw[t, rng.choice(8, size=int(rng.integers(2, 4)), replace=False)]]
            words = list(kws)
            if rng.random() < 0.5:  # half the queries also carry a fairly common word
                words.insert(1, self.general[int(rng.integers(50, 2000))])
            out.append((" ".join(words), qt, qi))
        return out


# -- loading: binary COPY ---------------------------------------------------------------------------

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _text(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def _halfvec(dim: int) -> Callable[[np.ndarray], bytes]:
    """pgvector's binary halfvec: int16 dim, int16 unused, dim big-endian IEEE half floats."""
    head = struct.pack(">ihh", 4 + 2 * dim, dim, 0)
    return lambda v: head + v.tobytes()


def copy_chunk(conn: psycopg.Connection[Any], corpus: Corpus, chunk_no: int, chunk: list[Any]) -> int:
    data = corpus.rows(chunk_no, chunk)
    text_be, image_be = data["text"].astype(">f2"), data["image"].astype(">f2")
    tvec, ivec = _halfvec(TEXT_DIM), _halfvec(IMAGE_DIM)
    tm, im = _text(TEXT_MODEL), _text(IMAGE_MODEL)
    ncols = struct.pack(">h", 11)
    buf = [COPY_HEADER]
    row = 0
    for org, asset_id, size, _topics in chunk:
        org_b, asset_b, src_b = _text(org), _text(asset_id), _text(f"/archive/{org}/{asset_id}.mp4")
        for idx in range(size):
            start = idx * 8.0
            buf.append(
                ncols
                + org_b
                + asset_b
                + struct.pack(">ii", 4, idx)
                + src_b
                + struct.pack(">idid", 8, start, 8, start + 8.0)
                + _text(data["transcripts"][row])
                + tvec(text_be[row])
                + ivec(image_be[row])
                + tm
                + im
            )
            row += 1
    buf.append(struct.pack(">h", -1))
    with conn.cursor() as cur, cur.copy(f"COPY scenes ({SCENE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
        for i in range(0, len(buf), 2000):
            cp.write(b"".join(buf[i : i + 2000]))
    return row


def meta_get(conn: psycopg.Connection[Any], key: str) -> Any:
    row = conn.execute("SELECT value FROM bench_meta WHERE key = %s", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def meta_set(conn: psycopg.Connection[Any], key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO bench_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


def load(conn: psycopg.Connection[Any], corpus: Corpus) -> float:
    """Load (or finish loading) the corpus; returns the load's seconds (0 if it was already there)."""
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)")
    done = meta_get(conn, "loaded")
    if done and done["scenes"] == corpus.n:
        say(f"reusing the loaded database: {corpus.n:,} scenes (seed {corpus.seed})")
        return float(meta_get(conn, "load_s") or 0.0)
    next_chunk = meta_get(conn, "next_chunk") or 0
    if next_chunk == 0:
        # A fresh load: no vector/text indexes while loading (built afterwards), no rows yet.
        for name in INDEXES:
            if meta_get(conn, f"ddl:{name}") is None:
                row = conn.execute("SELECT pg_get_indexdef(to_regclass(%s))", (name,)).fetchone()
                if not (row and row[0]):
                    raise SystemExit(f"the product schema has no index {name}: update INDEXES")
                meta_set(conn, f"ddl:{name}", row[0])
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        for name in orgindex.existing(conn):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute("TRUNCATE scenes, assets CASCADE")  # and what references them (scene_units, faces)
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY assets (org_id, asset_id, source, version, status, scenes,"
                " text_model, image_model) FROM STDIN"
            ) as cp,
        ):
            for org, asset_id, size, _t in corpus.assets:
                src = f"/archive/{org}/{asset_id}.mp4"
                cp.write_row((org, asset_id, src, "1", "ready", size, TEXT_MODEL, IMAGE_MODEL))
        meta_set(conn, "load_s", 0.0)
    conn.execute("SET synchronous_commit = off")
    conn.execute(
        "SET session_replication_role = replica"
    )  # rows are consistent by construction: no FK checks
    chunks = list(corpus.chunks())
    loaded = sum(sum(a[2] for a in c) for c in chunks[:next_chunk])
    spent = float(meta_get(conn, "load_s") or 0.0)
    started = time.perf_counter()
    for no in range(next_chunk, len(chunks)):
        with conn.transaction():
            loaded += copy_chunk(conn, corpus, no, chunks[no])
            meta_set(conn, "next_chunk", no + 1)
            meta_set(conn, "load_s", spent + time.perf_counter() - started)
        el = time.perf_counter() - started
        done_now = loaded - sum(sum(a[2] for a in c) for c in chunks[:next_chunk])
        rate = done_now / el if el else 0.0
        eta = (corpus.n - loaded) / rate if rate else 0.0
        say(f"load: {loaded:>10,}/{corpus.n:,} scenes  {rate:8,.0f} rows/s  ETA {eta:6.0f}s")
    conn.execute("SET session_replication_role = origin")
    say("vacuum analyze ...")
    conn.execute("VACUUM (ANALYZE) assets")
    conn.execute("VACUUM (ANALYZE) scenes")
    load_s = spent + time.perf_counter() - started
    meta_set(conn, "load_s", load_s)
    meta_set(conn, "loaded", {"scenes": corpus.n, "seed": corpus.seed, "version": DATA_VERSION})
    return load_s


def build_indexes(
    conn: psycopg.Connection[Any], maint_mem: str, workers: int, exact_max_rows: int
) -> dict[str, dict[str, float]]:
    conn.execute(f"SET maintenance_work_mem = '{maint_mem}'")
    conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
    out = {}
    for name in INDEXES:
        if meta_get(conn, f"ddl:{name}") is None:  # a database loaded by an older bench: take it as is
            row = conn.execute("SELECT pg_get_indexdef(to_regclass(%s))", (name,)).fetchone()
            if not (row and row[0]):
                raise SystemExit(f"no index {name} and no definition of it: remove {name}'s database")
            meta_set(conn, f"ddl:{name}", row[0])
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        built = meta_get(conn, f"build:{name}")
        if not (exists and exists[0]) or built is None:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
            say(f"building {name} ...")
            t0 = time.perf_counter()
            conn.execute(meta_get(conn, f"ddl:{name}"))
            built = time.perf_counter() - t0
            meta_set(conn, f"build:{name}", built)
            say(f"built {name} in {built:.0f}s")
        size = conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()
        out[name] = {"build_s": round(built, 1), "mb": round((size[0] if size else 0) / 2**20, 1)}
    # The product's dedicated indexes for large organisations, what orgindex.ensure() builds, each
    # build timed (largest organisation first), then ensure() itself must find nothing left to do.
    sizes = conn.execute("SELECT org_id, count(*) FROM scenes GROUP BY org_id ORDER BY 2 DESC").fetchall()
    have = orgindex.existing(conn)
    for org, n in sizes:
        for signal in orgindex.SIGNALS:
            name = orgindex.index_name(org, signal)
            if n > exact_max_rows and name not in have:
                say(f"building {name} ({org}, {signal}, {n:,} rows) ...")
                t0 = time.perf_counter()
                conn.execute(orgindex.ddl(org, signal, concurrently=False))
                meta_set(conn, f"build:{name}", time.perf_counter() - t0)
    for line in orgindex.ensure(conn, exact_max_rows, concurrently=False):
        say(f"ensure: {line}")
    have = orgindex.existing(conn)
    hnsw = [n for n in have if not n.endswith("_keyword")]
    # Databases built before the keyword indexes timed their HNSW builds only in total.
    hnsw_s = meta_get(conn, "build:dedicated") or sum(float(meta_get(conn, f"build:{n}") or 0) for n in hnsw)
    keyword = [n for n in have if n.endswith("_keyword")]
    for label, names, seconds in (
        ("dedicated", hnsw, hnsw_s),
        ("keyword", keyword, sum(float(meta_get(conn, f"build:{n}") or 0) for n in keyword)),
    ):
        out[label] = {
            "build_s": round(float(seconds), 1),
            "mb": round(sum(have[n] for n in names) / 2**20, 1),
            "count": len(names),
        }
    return out


# -- queries ----------------------------------------------------------------------------------------

Queries = list[tuple[str, np.ndarray, np.ndarray]]
Results = list[list[tuple[str, int]]]


def run_queries(
    db: Database,
    org: str,
    queries: Queries,
    settings: Settings,
    *,
    path: Literal["auto", "exact", "hnsw"] = "auto",
) -> tuple[list[float], Results, list[str]]:
    """The engine's call (Services.search): heimdex.vectorstore.search.search in db.org_tx, settings
    passed; `path` forces the exact or the graph query (the product's own option)."""
    times, results, paths = [], [], []
    for text, qt, qi in queries:
        t0 = time.perf_counter()
        with db.org_tx(org) as conn:
            rows = search_mod.search(
                conn,
                text,
                text_vec=qt,
                text_model=TEXT_MODEL,
                image_vec=qi,
                image_model=IMAGE_MODEL,
                k=K,
                ef_search=settings.search_ef_search,
                exact_max_rows=settings.search_exact_max_rows,
                path=path,
            )
        times.append((time.perf_counter() - t0) * 1000)
        results.append([(r["asset_id"], r["idx"]) for r in rows])
    if path == "auto":
        with db.org_tx(org) as conn:
            paths.append(search_mod.plan(conn, settings.search_exact_max_rows)[1])
    return times, results, paths


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def recall(approx: Results, exact: Results) -> float:
    scores = [len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=False) if e]
    return statistics.fmean(scores) if scores else 0.0


def query_key(queries: Queries) -> str:
    return hashlib.sha1("\n".join(q[0] for q in queries).encode()).hexdigest()[:12]


def ground_truth(db: Database, home: Path, org: str, queries: Queries, settings: Settings) -> Results:
    cache = home / f"exact-{org}-{len(queries)}-{query_key(queries)}.json"
    sql = search_mod.EXACT_SQL  # the cache is valid while the exact query is the same
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached["sql"] == sql:
            return [[(a, i) for a, i in rows] for rows in cached["results"]]
    say(f"exact search for {org} ({len(queries)} queries) ...")
    t0 = time.perf_counter()
    _, results, _ = run_queries(db, org, queries, settings, path="exact")
    say(f"exact search for {org}: {time.perf_counter() - t0:.0f}s")
    cache.write_text(json.dumps({"sql": sql, "results": results}))
    return results


def float_truth(scenes: int, seed: int, org: str, queries: Queries) -> Results | None:
    """The exact answers of the float32 schema (DATA_VERSION 1: same corpus and queries, vectors as
    `vector`), where an earlier run left them: what halfvec costs against full precision."""
    path = CACHE / f"search-{scenes}-s{seed}-v1" / f"exact-{org}-{len(queries)}-{query_key(queries)}.json"
    if not path.exists():
        return None
    return [[(a, i) for a, i in rows] for rows in json.loads(path.read_text())["results"]]


def measure(
    db: Database,
    org: str,
    queries: Queries,
    warmup: Queries,
    exact: Results,
    settings: Settings,
    *,
    float_exact: Results | None = None,
) -> dict[str, Any]:
    """Latency in steady state: other queries first bring the pages they touch into shared_buffers
    (on these VMs the page cache is reclaimed quickly, so a cold read costs milliseconds)."""
    run_queries(db, org, warmup, settings)
    times, results, paths = run_queries(db, org, queries, settings)
    out: dict[str, Any] = {
        "p50_ms": round(pct(times, 50), 2),
        "p95_ms": round(pct(times, 95), 2),
        "p99_ms": round(pct(times, 99), 2),
        "recall_at_10": round(recall(results, exact), 4),
        "min_rows": min(len(r) for r in results),
        "path": paths[0] if paths else "forced",
    }
    if float_exact is not None:
        out["recall_vs_float_exact"] = round(recall(results, float_exact[: len(exact)]), 4)
    return out


def prewarm(conn: psycopg.Connection[Any]) -> float:
    """The product's warm-up of a freshly started server (heimdex.vectorstore.prewarm: pg_prewarm
    where the server has it, else a read of the relations' files, as here: the embedded build has no
    pg_prewarm); returns the seconds it took. Each run starts its own server with empty shared
    buffers; without a warm-up, a run right after another process used the memory measured p95
    257 ms for the largest organisation."""
    done = prewarm_mod.warm(conn)
    say(f"prewarm: {done.relations} relations ({done.mb:,.0f} MB) by {done.method} in {done.seconds:.1f}s")
    return done.seconds


def index_plan(db: Database, org: str, settings: Settings) -> str:
    """Which vector indexes the product's graph SQL uses for this organisation (EXPLAIN)."""
    qt = np.zeros(TEXT_DIM, dtype=np.float32)
    qt[0] = 1
    qi = np.zeros(IMAGE_DIM, dtype=np.float32)
    qi[0] = 1
    params = {
        "org": org,
        "or_q": "'x'",
        "qt": qt,
        "qi": qi,
        "text_model": TEXT_MODEL,
        "image_model": IMAGE_MODEL,
        "pool": 40,
        "k": K,
        "source": None,
        "rrf_k": search_mod.RRF_K,
        **search_mod.NO_FILTERS,
    }
    with db.org_tx(org) as conn:
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute("EXPLAIN " + search_mod.SQL, params).fetchall()
    names = [w for (line,) in rows for w in line.split() if "hnsw" in w or w.startswith(orgindex.PREFIX)]
    return ",".join(dict.fromkeys(n.strip('"') for n in names))


def main() -> None:
    logs.setup("WARNING")
    scenes = int(os.environ.get("SCENES", "1000000"))
    seed = int(os.environ.get("SEED", "7"))
    nq = int(os.environ.get("QUERIES", "200"))
    nw = int(os.environ.get("WARMUP", "200"))
    nr = min(nq, int(os.environ.get("RECALL_QUERIES", "100")))  # exact search in a big org is slow
    shared_buffers = os.environ.get("BENCH_SHARED_BUFFERS", "6GB")
    maint_mem = os.environ.get("BENCH_MAINTENANCE_WORK_MEM", "4GB")
    workers = int(os.environ.get("BENCH_BUILD_WORKERS", "1"))
    home = CACHE / f"search-{scenes}-s{seed}-v{DATA_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    # The product's settings (HEIMDEX_SEARCH_EF_SEARCH etc. apply), with the bench's home and server.
    settings = Settings(home=home, database_url=None, db_shared_buffers=shared_buffers, db_pool_size=2)

    t0 = time.perf_counter()
    corpus = Corpus(scenes, seed)
    say(f"corpus: {scenes:,} scenes in {len(corpus.assets):,} videos ({time.perf_counter() - t0:.1f}s)")
    db = Database(settings)
    try:
        with psycopg.connect(db.url, autocommit=True) as admin:
            sb = admin.execute("SHOW shared_buffers").fetchone()
            if sb and sb[0] != shared_buffers:
                say(f"note: shared_buffers is {sb[0]} (set when {home} was made), not {shared_buffers}")
            load_s = load(admin, corpus)
            indexes = build_indexes(admin, maint_mem, workers, settings.search_exact_max_rows)
            table_mb = admin.execute("SELECT pg_total_relation_size('scenes') / 1048576.0").fetchone()
            heap_mb = admin.execute("SELECT pg_table_size('scenes') / 1048576.0").fetchone()
            versions = admin.execute(
                "SELECT current_setting('server_version'), extversion FROM pg_extension"
                " WHERE extname = 'vector'"
            ).fetchone()
            sizes = dict(admin.execute("SELECT org_id, count(*) FROM scenes GROUP BY org_id").fetchall())
        if nq == 0:  # QUERIES=0: load and build only
            print(json.dumps({"scenes": scenes, "load_s": round(load_s, 1), "indexes": indexes}))
            return
        mid_org = min(
            (o for o, n in sizes.items() if n > settings.search_exact_max_rows), key=lambda o: sizes[o]
        )
        prewarm_s = None
        if os.environ.get("BENCH_PREWARM", "1") != "0":
            with psycopg.connect(db.url, autocommit=True) as admin:
                prewarm_s = prewarm(admin)
        report: dict[str, dict[str, Any]] = {}
        plans = {}
        for label, org in (("overall", LARGEST_ORG), ("filtered", ONE_PCT_ORG), ("mid", mid_org)):
            queries, warmup = corpus.queries(org, nq), corpus.queries(org, nw, stream=3)
            truth_q = queries[: nq if org == ONE_PCT_ORG else nr]
            exact = ground_truth(db, home, org, truth_q, settings)
            ft = float_truth(scenes, seed, org, truth_q)
            plans[label] = index_plan(db, org, settings)
            report[label] = measure(db, org, queries, warmup, exact, settings, float_exact=ft)
            if ft is not None:
                report[label]["exact_halfvec_vs_float"] = round(recall(exact, ft), 4)
            say(f"{label} ({org}, {sizes[org]:,} rows, {plans[label]}): {report[label]}")
        # The same queries again on the server that has now been serving: the warm figures, beside
        # the fresh ones above (a freshly started server, warmed only by the product's prewarm).
        for label, org in (("overall", LARGEST_ORG), ("filtered", ONE_PCT_ORG)):
            queries, warmup = corpus.queries(org, nq), corpus.queries(org, nw, stream=3)
            truth_q = queries[: nq if org == ONE_PCT_ORG else nr]
            exact = ground_truth(db, home, org, truth_q, settings)
            report[f"warm_{label}"] = measure(db, org, queries, warmup, exact, settings)
            say(f"warm {label}: {report[f'warm_{label}']}")
    finally:
        db.close()

    print(
        f"\n{scenes:,} scenes, {len(sizes)} organisations; largest {LARGEST_ORG} {sizes[LARGEST_ORG]:,} rows,"
        f" {ONE_PCT_ORG} {sizes[ONE_PCT_ORG]:,} rows, mid {mid_org} {sizes[mid_org]:,} rows;"
        f" table with indexes {table_mb[0]:,.0f} MB; load {load_s:.0f}s;"
        f" ef_search {settings.search_ef_search}, exact below {settings.search_exact_max_rows:,} rows"
    )
    print(f"\n{'index':<26}{'build s':>10}{'size MB':>10}")
    for name, f in indexes.items():
        print(f"{name:<26}{f['build_s']:>10.1f}{f['mb']:>10.1f}")
    print(
        f"\n{'queries (' + str(nq) + ' each)':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'recall@10':>11}"
        f"{'min rows':>10}  path"
    )
    for label, f in report.items():  # overall/filtered/mid: fresh server; warm_*: after serving
        print(
            f"{label:<26}{f['p50_ms']:>9.2f}{f['p95_ms']:>9.2f}{f['p99_ms']:>9.2f}{f['recall_at_10']:>11.4f}"
            f"{f['min_rows']:>10}  {f['path']}"
        )
    o, fl, md = report["overall"], report["filtered"], report["mid"]
    figures: dict[str, Any] = {
        "scenes": scenes,
        "seed": seed,
        "queries": nq,
        "recall_queries_overall": nr,
        "warmup_queries": nw,
        "organisations": len(sizes),
        "largest_org_rows": sizes[LARGEST_ORG],
        "filtered_org_rows": sizes[ONE_PCT_ORG],
        "ef_search": settings.search_ef_search,
        "exact_max_rows": settings.search_exact_max_rows,
        "vector_type": "halfvec",
        "load_s": round(load_s, 1),
        "build_s": indexes["dedicated"]["build_s"],  # every HNSW index (all are per organisation)
        "index_mb": indexes["dedicated"]["mb"],
        "hnsw_indexes": indexes["dedicated"]["count"],
        "hnsw_m": orgindex.M,
        "hnsw_ef_construction": orgindex.EF_CONSTRUCTION,
        "gin_build_s": indexes["scenes_tsv"]["build_s"],
        "gin_index_mb": indexes["scenes_tsv"]["mb"],
        "org_gin_build_s": indexes["keyword"]["build_s"],  # per-organisation keyword indexes (004)
        "org_gin_index_mb": indexes["keyword"]["mb"],
        "org_gin_indexes": indexes["keyword"]["count"],
        "heap_mb": round(float(heap_mb[0]), 1) if heap_mb else None,
        "table_total_mb": round(float(table_mb[0]), 1),
        "path": o["path"],
        "index_used": plans["overall"],
        "p50_ms": o["p50_ms"],
        "p95_ms": o["p95_ms"],
        "p99_ms": o["p99_ms"],
        "recall_at_10": o["recall_at_10"],
        "min_rows": o["min_rows"],
        "filtered_path": fl["path"],
        "filtered_p50_ms": fl["p50_ms"],
        "filtered_p95_ms": fl["p95_ms"],
        "filtered_p99_ms": fl["p99_ms"],
        "filtered_recall_at_10": fl["recall_at_10"],
        "filtered_min_rows": fl["min_rows"],
        "mid_org": mid_org,
        "mid_org_rows": sizes[mid_org],
        "mid_path": md["path"],
        "mid_index_used": plans["mid"],
        "mid_p50_ms": md["p50_ms"],
        "mid_p95_ms": md["p95_ms"],
        "mid_p99_ms": md["p99_ms"],
        "mid_recall_at_10": md["recall_at_10"],
        "mid_min_rows": md["min_rows"],
    }
    # halfvec against float32 (DATA_VERSION 1's exact answers, when that run's cache is here).
    for label, prefix in (("overall", "halfvec_"), ("filtered", "halfvec_filtered_")):
        r = report[label]
        if "recall_vs_float_exact" in r:
            figures[f"{prefix}recall_vs_float_exact"] = r["recall_vs_float_exact"]
            figures[f"{prefix}exact_vs_float_exact"] = r["exact_halfvec_vs_float"]
    for label, prefix in (("warm_overall", "warm_"), ("warm_filtered", "warm_filtered_")):
        for key in ("p50_ms", "p95_ms", "p99_ms", "recall_at_10"):
            figures[prefix + key] = report[label][key]
    figures.update(
        {
            "shared_buffers": shared_buffers,
            "build_workers": workers,
            "prewarm_s": None if prewarm_s is None else round(prewarm_s, 1),
            "postgres": versions[0] if versions else None,
            "pgvector": versions[1] if versions else None,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        }
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
