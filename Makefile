# The commands a newcomer and CI run. `make test` is what .ci/run calls.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test unit lint typecheck generate check-generated demo clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) ./scripts/setup.sh

setup: $(VENV)/.installed

## Set up everything, then run every check and the tests. All of them run even when one fails,
## so one run shows every problem; pytest's summary comes last and the exit code is non-zero if
## anything failed.
test: setup
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	$(BIN)/proctor crds generate --check || status=1; \
	$(BIN)/python -m dashboards.generate --check || status=1; \
	$(BIN)/pytest || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above: lint, types, generated files or tests)"; fi; \
	exit $$status

## The fast unit tests only (no servers, no real training steps, no wheel build).
unit: setup
	$(BIN)/pytest tests/unit -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## Regenerate the CRDs and the chart's CRD templates from the API models, and the chart's Grafana
## dashboards from dashboards/.
generate: setup
	$(BIN)/proctor crds generate
	$(BIN)/python -m dashboards.generate

## Every generated file checked, even after one has drifted; non-zero if any has.
check-generated: setup
	@status=0; \
	$(BIN)/proctor crds generate --check || status=1; \
	$(BIN)/python -m dashboards.generate --check || status=1; \
	exit $$status

## The demo, on the emulated cluster (proctor local run): three digits experiments. One passes
## the pyramid and trains; the pyramid stops one with a planted bug; the watchdog catches one whose
## loss goes non-finite, and its recovery bundle is shown. Exit 0 when each ends as designed.
demo: setup
	$(BIN)/proctor local run --code-path examples/digits \
		--expect digits-detached=Failed --expect digits-lr-restart=Failed \
		examples/demo/healthy.yaml examples/demo/planted-bug.yaml examples/demo/lr-restart.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
