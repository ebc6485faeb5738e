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
import resource
import statistics
import time
from typing import Any

from bench import bench_cold_start, bench_load
from heimdex import logs
from heimdex.config import Settings
from heimdex.models import Models

TEXTS = 400
VOCABULARY = (
    "harbour fire midnight chief interview oven bicycle bridge vote street lights river council budget"
    " storm lamp lighthouse weather news tonight crews warehouse ladder engines museum"
)


def text_vectors(rounds: int = 3) -> dict[str, float]:
    """Scene texts per second through each encoder (the index stage's batches of 32), wall and per
    CPU second (this process's user + system time: steadier on a loaded machine); rounds alternate
    between the encoders, medians reported."""
    rng, words = random.Random(1), VOCABULARY.split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(TEXTS)]
    models = Models(Settings())
    encoders = {"onnx": models.onnx_text_encoder(), "torch": models.torch_text_encoder()}
    wall: dict[str, list[float]] = {name: [] for name in encoders}
    cpu: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encoder in encoders.items():
            encoder.encode(texts[:32], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            before, started = cpu_now(), time.perf_counter()
            encoder.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            wall[name].append(TEXTS / (time.perf_counter() - started))
            cpu[name].append(TEXTS / max(cpu_now() - before, 1e-9))
    found: dict[str, float] = {}
    for name in encoders:
        found[f"{name}_texts_per_s"] = round(statistics.median(wall[name]), 1)
        found[f"{name}_texts_per_cpu_s"] = round(statistics.median(cpu[name]), 1)
    return found


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
