# Heimdex. `make demo` sets everything up and runs the main job; `make test` runs the tests.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.setup-done
SAMPLES  := $(CURDIR)/samples
# State goes to HEIMDEX_HOME (default: ~/.local/share/heimdex, /var/lib/heimdex for root), so the
# CLI finds the demo's index afterwards without any variable set.

.PHONY: setup demo test lint bench bench-load bench-cold bench-search eval dev clean screenshots bench-web

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

# The query path first (cold start, CLI, memory and load, each next to the torch baseline: one JSON
# line), indexing speed last: the last line printed is indexing's JSON.
bench: $(STAMP)
	$(BIN)/python -m bench.bench_query
	$(BIN)/python -m bench.bench_index

bench-load: $(STAMP)
	$(BIN)/python -m bench.bench_load

bench-cold: $(STAMP)
	$(BIN)/python -m bench.bench_cold_start

bench-search: $(STAMP)
	$(BIN)/python -m bench.bench_search
	$(BIN)/python -m bench.bench_people

# Search quality on generated news-like clips (bench/eval_quality.py): recall@1, recall@5, MRR per kind.
eval: $(STAMP)
	$(BIN)/python -m bench.eval_quality

# The web app (issue 16): a PNG of each page, from a fresh demo index, into docs/screenshots/
# (PAGES="search watch" for some); and the time from Enter to the first result painted, in the browser.
PAGES ?=
screenshots: $(STAMP)
	$(BIN)/python -m bench.screenshots $(PAGES)

bench-web: $(STAMP)
	$(BIN)/python -m bench.bench_web

# The cloud path on local emulators; writes .heimdex-dev.json when ready, Ctrl-C stops everything.
dev: $(STAMP)
	$(BIN)/heimdex dev --ready-file $(CURDIR)/.heimdex-dev.json

clean:
	rm -rf $(SAMPLES) .pytest_cache .mypy_cache .ruff_cache

# --- Cloud deployment (terraform/README.md) ------------------------------------------------------
# make images ENV=dev [TAG=...]; make plan ENV=dev [TAG=...]; make apply ENV=dev. PROJECT and REGION
# default to the environment's terraform.tfvars.
.PHONY: functions-src images bootstrap plan apply migrate iac-check
ENV       ?= dev
# One root module (terraform/*.tf) for every environment; envs/$(ENV)/ gives its values and its
# state location. Each environment keeps its own working directory (.terraform-$(ENV)).
ENVDIR     = envs/$(ENV)
TF         = TF_DATA_DIR=.terraform-$(ENV) terraform -chdir=terraform
TF_INIT    = $(TF) init -input=false -reconfigure -backend-config=$(ENVDIR)/backend.hcl
tfvar      = $(shell sed -n 's/^$(1) *= *"\(.*\)"/\1/p' terraform/$(ENVDIR)/terraform.tfvars)
PROJECT   ?= $(call tfvar,project_id)
REGION    ?= $(call tfvar,region)
TAG       ?=
IMAGE_TAG  = $(or $(TAG),$(shell git rev-parse --short HEAD))
REGISTRY   = $(REGION)-docker.pkg.dev/$(PROJECT)/heimdex
STAGES     = $(shell $(BIN)/python -m heimdex.core.graph stages)
FUNCTIONS  = $(patsubst functions/%/main.py,%,$(wildcard functions/*/main.py))
TF_VARS    = -var-file=$(ENVDIR)/terraform.tfvars $(if $(TAG),-var=image_tag=$(TAG))
TF_PLAN    = tfplan-$(ENV)

# The functions' requirements.txt install ./heimdex-src: a copy of the package next to main.py,
# zipped with the function by Terraform (archive_file).
functions-src:
	@for f in $(FUNCTIONS); do \
	  rm -rf functions/$$f/heimdex-src && mkdir -p functions/$$f/heimdex-src && \
	  cp -r pyproject.toml README.md shared functions/$$f/heimdex-src/ && \
	  find functions/$$f/heimdex-src \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} + ; \
	done
	@echo "==> heimdex-src prepared for: $(FUNCTIONS)"
	$(BIN)/heimdex export-text-model --out functions/search/text-onnx  # queries: ONNX, no torch

# First apply of a new environment: the APIs and the image registry, so that images can be pushed
# before the services that run them are created.
bootstrap: functions-src
	$(TF_INIT)
	$(TF) apply -input=false $(TF_VARS) -target=module.project_services -target=module.artifact_registry

images: $(STAMP)
	gcloud auth configure-docker $(REGION)-docker.pkg.dev --quiet
	@for s in $(STAGES); do \
	  echo "==> $(REGISTRY)/$$s:$(IMAGE_TAG)"; \
	  docker build --platform linux/amd64 -f containers/Dockerfile $$($(BIN)/python -m heimdex.core.graph build-args $$s) \
	    -t $(REGISTRY)/$$s:$(IMAGE_TAG) . && \
	  docker push $(REGISTRY)/$$s:$(IMAGE_TAG) || exit 1; \
	done

plan: functions-src
	$(TF_INIT)
	$(TF) plan -input=false $(TF_VARS) -out=$(TF_PLAN)

apply: functions-src
	$(TF_INIT)
	@if [ -f terraform/$(TF_PLAN) ]; then $(TF) apply -input=false $(TF_PLAN) && rm -f terraform/$(TF_PLAN); \
	else $(TF) apply -input=false $(TF_VARS); fi

# The schema, as the database owner (the only identity that may change it): its IAM database user
# gets cloudsqlsuperuser (idempotent), then the maintenance job runs once and is waited for.
migrate:
	gcloud sql users assign-roles "$$($(TF) output -raw db_owner_user)" \
	  --instance="$$($(TF) output -raw sql_instance)" --project=$(PROJECT) \
	  --type=CLOUD_IAM_SERVICE_ACCOUNT --database-roles=cloudsqlsuperuser
	gcloud run jobs execute "$$($(TF) output -raw db_maintenance_job)" \
	  --region=$(REGION) --project=$(PROJECT) --wait

# What CI checks offline: python-hcl2 contract tests and checkov (needs .venv-iac, see scripts/setup.sh).
iac-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_terraform.py
