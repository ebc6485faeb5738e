# Heimdex. `make demo` sets everything up and runs the main job; `make test` runs the tests.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.setup-done
SAMPLES  := $(CURDIR)/samples
# State goes to HEIMDEX_HOME (default: ~/.local/share/heimdex, /var/lib/heimdex for root), so the
# CLI finds the demo's index afterwards without any variable set.

.PHONY: setup demo test lint bench bench-search dev clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	./scripts/setup.sh
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/heimdex samples $(SAMPLES)
	$(BIN)/heimdex index $(SAMPLES)
	$(BIN)/heimdex assets
	@for q in "the harbour fire after midnight" "fire chief interview" "how hot should the oven be" \
	          "bicycle bridge vote" "street lights by the river"; do \
	  echo; echo "==> heimdex search \"$$q\""; $(BIN)/heimdex search "$$q" --k 3 || exit 1; \
	done

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check shared tests bench functions containers
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bench_index.py

bench-search: $(STAMP)
	$(BIN)/python bench/bench_search.py

# The cloud path on local emulators; writes .heimdex-dev.json when ready, Ctrl-C stops everything.
dev: $(STAMP)
	$(BIN)/heimdex dev --ready-file $(CURDIR)/.heimdex-dev.json

clean:
	rm -rf $(SAMPLES) .pytest_cache .mypy_cache .ruff_cache
