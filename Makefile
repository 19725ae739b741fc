# The README's quick start is `make run` and `make test`; both build .venv when it is
# missing or older than pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit bench chaos lint migrate clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/shop up

# The suite runs in parallel (pytest-xdist, TEST_WORKERS processes; each test has its own
# vhost and databases), then the tests marked `serial`, which stop the shared broker, run
# alone. Exit 5 (no test selected, e.g. PYTEST_ARGS deselected them) is no failure there.
TEST_WORKERS ?= 2  # more makes the distribution's RabbitMQ 3.10 stall on vhost churn
PYTEST_ARGS ?=

test: $(STAMP)
	@$(BIN)/python -m tests.support.preflight
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -m serial $(PYTEST_ARGS) || test $$? -eq 5

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.flash_sale
	$(BIN)/python -m bench.cluster

# make chaos SECONDS=300 DATABASE=postgresql   (make cannot take --seconds itself)
SECONDS ?= 60
DATABASE ?= sqlite
chaos: $(STAMP)
	$(BIN)/shop chaos --seconds $(SECONDS) --database $(DATABASE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

migrate: $(STAMP)
	$(BIN)/shop migrate

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
