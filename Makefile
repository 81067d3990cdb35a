# sparserl: `make demo` runs the main job, `make test` the checks CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev,sig,envs
DEMO_BUDGET ?= 60000
DEMO_MILP_INSTANCES ?= 4
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-all test-cluster format clean

install: $(STAMP)

# Reinstalls whenever pyproject.toml (or the extras chosen here) changes. torch is installed first and pinned by
# constraints.txt, so nothing ever pulls another (CUDA) build of it.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	@out=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/sparserl run experiments/configs/ns_hardmaze.toml --set budget=$(DEMO_BUDGET) \
		--out $$out --executor ray && \
	echo "plots of the demo are in $$out/plots/" && \
	$(BIN)/sparserl milp generate --problem setcover --size easy --n $(DEMO_MILP_INSTANCES) \
		--seed 2026 --out $$out/setcover-easy && \
	$(BIN)/sparserl milp solve --brancher experiments/checkpoints/gcnn_setcover.pt relpscost \
		--instances $$out/setcover-easy --seeds 0 --time-limit 120 --out $$out/solve \
		--executor ray

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -m "(slow or not slow) and not cluster"
	$(MAKE) test-cluster

# A 3-node Ray cluster on loopback (experiments/cluster.py), in a pytest process of its own.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster tests/experiments/test_cluster.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
