# shopsim — common tasks. Every target creates and fills .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: constraints demo test test-slow test-browser test-real-data test-notebooks readme-check readme-sources lint format type bench headroom clean

# The strict editable install (what mypy needs) links files one by one, so a new module needs
# a reinstall: track the list of package files and reinstall when it changes.
PKG_LIST := $(VENV)/.package-files
$(shell mkdir -p $(VENV) && find src data encoders envs agents evaluation experiments tests -type f \( -name '*.py' -o -name '*.gz' -o -name '*.md' -o -name '*.yaml' -o -name '*.j2' \) 2>/dev/null | sort > $(PKG_LIST).new && (cmp -s $(PKG_LIST).new $(PKG_LIST) || mv $(PKG_LIST).new $(PKG_LIST)); rm -f $(PKG_LIST).new)

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh scripts/constraints.txt $(PKG_LIST)
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

## test-browser: report.html in Debian's headless chromium (SHOPSIM_REPORT_RUN=DIR: that run's
## report; default: a tiny toy run). Needs: apt-get install chromium chromium-driver
test-browser: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m browser

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

## bench: the performance report, every figure beside a reference measured in the same run
## (all groups; installs the bench extra, SARDINE, if missing; ROWS=10000000 adds the large-log
## memory check; BENCH_OUT=FILE also writes the JSON there)
ROWS ?= 0
BENCH_OUT ?=
bench: $(VENV)/.installed
	$(BIN)/python -c 'import sardine' 2>/dev/null || $(BIN)/python -m pip install -q -e ".[bench]" --config-settings editable_mode=strict
	$(BIN)/shopsim bench --json --rows $(ROWS) $(if $(BENCH_OUT),--out $(BENCH_OUT))

## headroom: the five packaged configs × SEEDS, each one `shopsim run` at THREADS torch threads,
## then the RL-headroom table (hours on 2 cores; H&M and MIND read $$SHOPSIM_DATA)
CONFIGS ?= rees46-clicks rees46-revenue uci-basket hm-basket mind-clicks
SEEDS ?= 0 1 2
THREADS ?= 1
HEADROOM ?= runs/headroom
headroom: $(VENV)/.installed
	for s in $(SEEDS); do for c in $(CONFIGS); do \
	  OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/shopsim run $$c --set seed=$$s \
	    --out $(HEADROOM)/$$c-s$$s || exit 1; done; done
	$(BIN)/shopsim headroom $(HEADROOM)/*-s*/ --out $(HEADROOM)

## test-notebooks: execute notebooks/ top to bottom with tiny budgets (outputs are not written back)
test-notebooks: $(VENV)/.installed
	SHOPSIM_NB_BUDGET=tiny $(BIN)/python -m pytest -q -p no:cacheprovider --nbmake notebooks/*.ipynb notebooks/test_notebooks.py

## readme-sources: rerun the quickstart at 1 thread, keep its small result files as the source of
## the README's blocks (benchmarks/readme/quickstart) and regenerate every block
README_RUN ?= runs/readme-quickstart
readme-sources: $(VENV)/.installed
	rm -rf $(README_RUN) && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/shopsim quickstart --out $(README_RUN)
	rm -rf benchmarks/readme/quickstart && mkdir -p benchmarks/readme/quickstart/data benchmarks/readme/quickstart/encoder benchmarks/readme/quickstart/simulator
	cp $(README_RUN)/results.json $(README_RUN)/results.md $(README_RUN)/config.yaml $(README_RUN)/timing.json $(README_RUN)/provenance.json benchmarks/readme/quickstart/
	cp $(README_RUN)/data/report.json benchmarks/readme/quickstart/data/
	cp $(README_RUN)/encoder/eval.json benchmarks/readme/quickstart/encoder/
	cp $(README_RUN)/simulator/fidelity.json benchmarks/readme/quickstart/simulator/
	$(BIN)/python scripts/readme_blocks.py --write

## readme-check: rerun the quickstart at 1 thread and fail if README's quickstart block is stale
readme-check: $(VENV)/.installed
	rm -rf runs/readme-check && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/shopsim quickstart --out runs/readme-check
	$(BIN)/python scripts/readme_blocks.py --check quickstart --source quickstart=runs/readme-check

## constraints: pin scripts/constraints.txt to this venv's versions (then: make readme-sources)
constraints: $(VENV)/.installed
	{ sed -n '/^#/p' scripts/constraints.txt; $(BIN)/pip freeze | grep -v '^-e\|^shopsim\|^torch=='; } > scripts/constraints.txt.new
	mv scripts/constraints.txt.new scripts/constraints.txt

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
