# pocketml: `make demo` runs the end-to-end story, `make test` runs lint + the test suite.
# Both create .venv in the repo root on first use and install pocketml[all,dev] into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-out
# pytest-xdist workers: tests are isolated (own temp dirs, free ports, a fresh PostgreSQL
# database each), so two processes use both cores of a CI machine. TEST_WORKERS=0 runs serially.
# Work stealing: a worker that runs out takes queued tests from the other, so one long
# test late in the order (the demo's) does not leave a core idle at the end. The 25
# slowest tests are printed, to see where the 20-minute budget goes.
TEST_WORKERS ?= 2

.PHONY: demo test lint install format bench clean test-ts lint-ts ts-install test-ts-browser test-flower

install: $(STAMP)

# torch is installed first, pinned, so pip takes the local CPU wheel and never resolves
# an unpinned torch (with gigabytes of CUDA) for a dependency.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pocketml demo --out $(DEMO_OUT)

lint: $(STAMP) lint-ts
	$(BIN)/ruff check src tests benchmarks conformance clients/typescript/scripts
	$(BIN)/ruff format --check src tests benchmarks conformance clients/typescript/scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint test-ts test-ts-browser test-flower
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

# The TypeScript device SDK (clients/typescript): Node 20+ and npm, packages from the npm
# registry only (its .npmrc keeps onnxruntime-node from fetching CUDA files elsewhere).
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.pocketml-stamp

ts-install: $(TS_STAMP)

$(TS_STAMP): $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund
	touch $(TS_STAMP)

lint-ts: $(TS_STAMP)
	cd $(TS) && npm run --silent lint

# Its conformance suite starts a real server with conformance/serve.py in this venv.
test-ts: $(STAMP) $(TS_STAMP)
	cd $(TS) && POCKETML_PYTHON=$(abspath $(BIN))/python npm test --silent

# The onnxruntime-web adapter and the web example page in headless Chromium (Debian's
# chromium; .ci/run installs it); the example talks to a real server from this venv.
test-ts-browser: $(STAMP) $(TS_STAMP)
	@command -v chromium >/dev/null || { echo "test-ts-browser needs Chromium: apt-get install -y chromium (or run make test-ts alone)"; exit 1; }
	cd $(TS) && POCKETML_PYTHON=$(abspath $(BIN))/python npm run --silent test:browser

# pocketml.federated.flower against a real Flower: flwr cannot live in .venv (its pins replace
# the server's fastapi, starlette, uvicorn, typer, rich, protobuf), so it gets a venv of its
# own with what the module imports, and runs pocketml from src/ (about 40 s the first time).
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed-stamp

$(FLOWER_STAMP): pyproject.toml
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet "flwr==1.42.*" "dp-accounting>=0.6" "sqlalchemy>=2.0.30" "pytest>=8"
	touch $(FLOWER_STAMP)

test-flower: $(FLOWER_STAMP)
	PYTHONPATH=src $(FLOWER_VENV)/bin/python -m pytest --noconftest -q -p no:cacheprovider tests/federated/test_flower.py

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks conformance clients/typescript/scripts
	$(BIN)/ruff format src tests benchmarks conformance clients/typescript/scripts

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(FLOWER_VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
