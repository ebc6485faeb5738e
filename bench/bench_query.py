"""The query path in one JSON line, this checkout (ONNX Runtime) next to the torch baseline measured in
the same run (bench/baseline.py): the search function's cold start, `heimdex search` as a new process,
memory after the first query (bench_cold_start), search under load (bench_load), and text vectors
for indexing on either encoder (scene texts per second, one thread each, as the index stage runs).

    make bench                                    # this first, then indexing (bench_index)
    .venv/bin/python -m bench.bench_query         # this alone
    COLD_RUNS=3 SCENES=100000 CLIENTS=8 DURATION_S=20 .venv/bin/python -m bench.bench_query

The last line is one JSON object; `targets` says which of the issue's targets each figure meets.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from bench import bench_cold_start, bench_load
from heimdex import logs
from heimdex.config import Settings
from heimdex.models import Models

TEXTS = 400


def text_vectors() -> dict[str, float]:
    """Scene texts per second through each encoder (the index stage's batches of 32)."""
    rng = random.Random(1)
    words = [
        "harbour",
        "fire",
        "midnight",
        "chief",
        "interview",
        "oven",
        "bicycle",
        "bridge",
        "vote",
        "street",
        "lights",
        "river",
        "council",
        "budget",
        "storm",
        "lamp",
        "lighthouse",
        "weather",
        "news",
        "tonight",
        "crews",
        "warehouse",
        "ladder",
        "engines",
        "museum",
    ]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(TEXTS)]
    models = Models(Settings())
    found: dict[str, float] = {}
    for name, encoder in (("onnx", models.onnx_text_encoder()), ("torch", models.torch_text_encoder())):
        encoder.encode(texts[:32], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        started = time.perf_counter()
        encoder.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        found[f"{name}_texts_per_s"] = round(TEXTS / (time.perf_counter() - started), 1)
    return found


def targets(cold: dict[str, Any], load: dict[str, Any]) -> dict[str, bool]:
    onnx, loaded = cold["onnx"], load["onnx"]
    return {
        "cold_start_le_1_5_s": onnx["first_result_s"] <= 1.5,
        "cli_search_le_1_0_s": onnx["cli_search_s"] <= 1.0,
        "rss_le_350_mb": onnx["rss_mb"] <= 350,
        "load_ge_150_rps": loaded["throughput_rps"] >= 150,
        "load_p95_le_100_ms": loaded["p95_ms"] <= 100,
    }


def main() -> None:
    logs.setup("WARNING")
    before = os.getloadavg()
    cold = bench_cold_start.measure(["onnx", "torch"], int(os.environ.get("COLD_RUNS", "3")))
    load = bench_load.measure(["onnx", "torch"])
    vectors = text_vectors()
    figures = {
        "cold": cold,
        "load": load,
        "text_vectors": vectors,
        "targets": targets(cold, load),
        "loadavg_before": [round(x, 2) for x in before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
