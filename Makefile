# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both set up everything (apt packages, .venv, Python deps) on first use, idempotently.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: setup demo demo-ros test lint bench clean

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

demo: setup
	$(BIN)/perception demo --out $(OUT)

# the demo over a real ROS 2 graph: two node processes on loopback DDS, recorded to an MCAP bag
demo-ros: setup
	$(BIN)/perception demo --ros --out $(OUT)

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
