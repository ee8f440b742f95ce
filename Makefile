# The two commands a newcomer needs:  make demo   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint unit realcluster crash clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/cni-migrate demo

lint: install
	$(BIN)/ruff check migrate tests
	$(BIN)/ruff format --check migrate tests
	$(BIN)/mypy migrate

# The default test run: lint, types, unit, scenario, CLI and crash tests.
test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
