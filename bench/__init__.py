"""Benchmarks, run from the repository root as modules (`python -m bench.bench_search`, or `make
bench`); bench_load reuses bench_search's corpus and loader as a library."""
