# The two commands a newcomer needs:  make demo   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test test-fast lint kube bench bench-real soak e2e clean

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

# The real control plane's binaries, built once from pinned Go modules and cached.
kube:
	tools/kube/build

# The default test run: lint, types, unit, CLI, the crash matrix, and the scenarios on
# both backends (simulated and a real apiserver with kwok nodes). Two pytest workers: most
# real-API time is waiting on controllers, and each worker starts its own control planes;
# worksteal: an idle worker takes queued tests from the busy one (with plain "load" the
# fault tests, queued together, ran on one worker while the other sat idle for 20 min).
TEST_WORKERS ?= 2
test: lint kube
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal --durations=25

# Without the real control plane and the crash matrix: a quick loop while editing. Three
# workers on two cores: these tests spend their time starting CLI processes, and a third
# worker fills the gaps (497 tests: 141-147 s on two, 120 s on three, measured 2026-12-07).
FAST_WORKERS ?= 3
test-fast: lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(FAST_WORKERS) --dist worksteal -m "not realcluster and not slow"

# The long forms of the reliability tests (issue 9): 100 random SIGKILLs on the simulated
# cluster, 10 on the real control plane, plus every fault class through the fault proxy.
soak: install kube
	CNI_MIGRATE_SOAK=1 $(BIN)/pytest -q -s -p no:cacheprovider tests/cli/test_random_kill.py \
		tests/realcluster/test_random_kill_real.py tests/realcluster/test_faults.py tests/realcluster/test_outage.py

# Speed goals live here, not in timed asserts: plan building at 500..10,000 nodes, the
# cost of one checkpoint at 100..5,000 nodes, and the simulated cluster at 200..5,000 nodes.
bench: install
	$(BIN)/python benchmarks/plan_scale.py --json benchmarks/plan_scale.json
	$(BIN)/python benchmarks/checkpoint_cost.py
	$(BIN)/python benchmarks/sim_scale.py --json benchmarks/sim_scale.json

# The same against the real control plane (kwok nodes; about 30 min on 2 cores): the
# in-cluster checkpoint store, reading 1,000 nodes / 30,000 pods, and 50 nodes migrated by
# cni-migrate and by a kubectl loop.
bench-real: install kube
	$(BIN)/python benchmarks/checkpoint_cost.py --incluster --repeat 200
	$(BIN)/python benchmarks/inventory_real.py --json benchmarks/inventory_real.json
	$(BIN)/python benchmarks/migrate_real.py --json benchmarks/migrate_real.json

# End-to-end on a kind cluster (1 control-plane + 3 workers; as root): installs the lab's
# Debian packages when missing, builds the local lab (Docker engine, kind, node image;
# cached) unless E2E_ARGS="--images upstream".
# About 2 minutes with a cached lab; see e2e/README.md.
e2e: install
	e2e/images/prereqs
	@# The lab is built before pytest starts (a cold build takes about an hour; inside pytest
	@# its per-test timeout would cut it short); cached, it takes seconds.
	case " $(E2E_ARGS) " in *" --images upstream "*|*"--images=upstream"*) ;; *) e2e/images/build >/dev/null ;; esac
	$(BIN)/pytest e2e -v $(E2E_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
