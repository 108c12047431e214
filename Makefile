# The commands a newcomer and CI run. `make test` is what .ci/run calls.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint typecheck generate check-generated unit demo clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) ./scripts/setup.sh

setup: $(VENV)/.installed

## Set up everything, then lint, type-check, check generated files and run the tests.
test: setup lint typecheck check-generated
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## Regenerate the CRDs and the chart's CRD templates from the API models.
generate: setup
	$(BIN)/proctor crds generate

check-generated: setup
	$(BIN)/proctor crds generate --check

## Run the demo on the embedded local cluster.
demo: setup
	@echo "make demo: coming soon. It lands with the local-mode issue (proctor local run)."
	@echo "Today you can check manifests without a cluster:"
	$(BIN)/proctor validate examples/digits/experiment.yaml examples/digits/pyramid.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
