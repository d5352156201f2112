# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both set up everything (apt packages, .venv, Python deps) on first use, idempotently.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: setup demo demo-ros test lint bench clean

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

# 1) a synthetic drive through the network with overlays and metrics against ground truth, then
# 2) the same network as a ROS 2 node: synthetic camera + perception node as two processes over
#    loopback DDS, inputs and outputs recorded to an MCAP bag, overlays and a rates/latency summary
demo: setup
	$(BIN)/perception demo --out $(OUT)
	$(BIN)/perception demo --ros --out $(OUT)/ros

demo-ros: setup
	$(BIN)/perception demo --ros --out $(OUT)/ros

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check perception test
	$(BIN)/mypy

bench: setup
	$(BIN)/perception bench model --out $(OUT)/bench
	$(BIN)/perception bench sim --out $(OUT)/bench
	$(BIN)/perception bench ros --out $(OUT)/bench

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache
