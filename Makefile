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

test: $(STAMP)
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.flash_sale

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
