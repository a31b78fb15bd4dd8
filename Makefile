# Consent Desk: `make run` serves the demo; `make test` runs lint and the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
# pytest-xdist workers for `make test` (each with its own SQLite file and PostgreSQL database);
# TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
export FLASK_APP := run
export PORT  # the app's links (PUBLIC_BASE_URL, when not set) follow the port it serves on

.PHONY: run test lint bench clean translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

translations: $(VENV)/.installed
	@if ls translations/*/LC_MESSAGES/*.po >/dev/null 2>&1; then $(BIN)/pybabel compile -d translations; fi

run: $(VENV)/.installed translations
	$(BIN)/flask db upgrade
	$(BIN)/flask demo
	@echo "Serving on http://127.0.0.1:$(PORT)  (admin: http://127.0.0.1:$(PORT)/admin/)"
	@# A background-job worker (roster imports) beside the server, stopped with it.
	@$(BIN)/flask jobs work --loop & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT; \
		$(BIN)/flask run --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.installed-test translations
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts
