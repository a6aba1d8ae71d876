# shopsim — common tasks. Every target creates and fills .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo test test-slow test-real-data lint format type bench clean

# The strict editable install (what mypy needs) links files one by one, so a new module needs
# a reinstall: track the list of package files and reinstall when it changes.
PKG_LIST := $(VENV)/.package-files
$(shell mkdir -p $(VENV) && find src envs encoders agents experiments tests -type f \( -name '*.py' -o -name '*.gz' -o -name '*.md' -o -name '*.yaml' \) 2>/dev/null | sort > $(PKG_LIST).new && (cmp -s $(PKG_LIST).new $(PKG_LIST) || mv $(PKG_LIST).new $(PKG_LIST)); rm -f $(PKG_LIST).new)

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh $(PKG_LIST)
	bash scripts/bootstrap.sh $(VENV)

## demo: run shopsim on the bundled sample logs (writes $(OUT))
demo: $(VENV)/.installed
	$(BIN)/shopsim quickstart --out $(OUT)

## test: the default test run (< 5 minutes on 2 cores; slow tests excluded)
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

## test-slow: only the tests marked slow
test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

## test-real-data: the format tests on the full public data sets (SHOPSIM_SHARED_DATA=DIR)
test-real-data: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m real_data

## lint: ruff, and the import-layer contracts of docs/architecture.md (lint-imports)
lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

type: $(VENV)/.installed
	$(BIN)/mypy -p shopsim

## bench: performance figures as JSON (add ROWS=10000000 for the large-log memory check)
ROWS ?= 0
bench: $(VENV)/.installed
	$(BIN)/shopsim bench --json --encoder --rows $(ROWS)

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
