# vLLM Gateway: `make run` starts it, `make test` tests it. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check faults bench bench-quick bench-instructions bench-ab bench-fleet bench-usage css clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# With no VLLM_URL the built-in vLLM simulator is started as the backend.
run: $(STAMP)
	@if [ -z "$$VLLM_URL" ]; then exec $(BIN)/vllm-gateway serve --demo; \
	else exec $(BIN)/vllm-gateway serve; fi

# Three test processes on two cores: most tests wait on servers and subprocesses. Each has
# its own private redis-server and databases; a module's tests stay in one process.
test: $(STAMP)
	bash scripts/test-prerequisites.sh
	$(BIN)/pytest -q -n 3 --dist loadfile --durations=15

check: $(STAMP)
	$(BIN)/ruff check src tests bench soak
	$(BIN)/ruff format --check src tests bench soak
	$(BIN)/mypy

# A bounded fault soak (about three minutes) against real processes; prints what each fault
# cost: statuses, events lost, slots leaked, recovery time. See soak/run.py.
faults: $(STAMP)
	bash scripts/test-prerequisites.sh
	$(BIN)/python soak/run.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

# Instructions per answer under callgrind (valgrind): the same figure for the same code on any
# host, to A/B a change to the hot path where CPU time is too noisy, e.g.
# `make bench-instructions BASELINE=HEAD~1` (without BASELINE: this checkout alone).
bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions $(if $(BASELINE),--baseline $(BASELINE))

# A/B: this checkout's gateway against another version's, in the same slices (a git ref or a
# checkout's path; built once under bench/.ab/), e.g. `make bench-ab BASELINE=HEAD~1`.
BASELINE ?= main
bench-ab: $(STAMP)
	$(BIN)/python bench/run.py --baseline $(BASELINE)

# Fleet routing: the three policies on four simulated backends (one 4x slower), three
# workloads; a table, the targets, and the chart bench/fleet/fleet.png. See bench/fleet/run.py.
bench-fleet: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/fleet/run.py

# The usage books on PostgreSQL at scale, in private databases (dropped afterwards): writes
# per second through the batched writer, then 10 million events seeded by COPY and the
# dashboard's and the usage report's queries timed. About 15 minutes. See bench/usage/run.py.
bench-usage: $(STAMP)
	$(BIN)/python bench/usage/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# Rebuild the pages' CSS (Tailwind) and re-vendor the browser libraries from npm; the
# output under src/vllm_gateway/static/ is committed, so users never need Node.js.
css:
	cd frontend && npm ci --no-audit --no-fund && npm run build
