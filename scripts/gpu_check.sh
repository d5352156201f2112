#!/usr/bin/env bash
# `make gpu-check`: what only a CUDA machine can tell, in about 8 minutes, ending with a one-screen summary.
#   1. the CUDA/TensorRT-gated tests (those marked @pytest.mark.gpu; TensorRT ones skip without TensorRT)
#   2. torch inference of the shipped network on CUDA: eager fp32 vs fp16 autocast vs torch.compile fp16
#      vs fp16 + CUDA graphs (`perception bench runtime --device cuda --compile`)
#   2b. the frame path: pre/post-processing on the GPU vs in numpy (`perception bench pipeline`)
#   3. training throughput: `perception train` for --steps on CUDA vs --cpu-steps on this machine's CPU
#   4. OUT/summary.md (also printed)
#
# It needs a CUDA build of PyTorch and the project's Python dependencies minus ROS, TensorRT and open3d:
# $PYTHON (default: .venv/bin/python or python3, whichever sees CUDA) with the working tree on PYTHONPATH.
# Wheels in .whl/ are installed first (no index: GPU machines may have no network). Training needs rendered
# drives: where open3d is missing, render them beforehand on the dev machine with `--prepare` and bring
# cache/gpu_check along. Exit status: 0 if every step passed, 1 if one failed, 2 without a CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<EOF
usage: scripts/gpu_check.sh [--out DIR] [--steps N] [--cpu-steps N] [--prepare]
  --out DIR       reports and runs (default out/gpu_check)
  --steps N       CUDA training steps (default 300)
  --cpu-steps N   CPU training steps for the comparison (default 20)
  --prepare       only render the training drives into cache/gpu_check (no GPU needed; needs open3d)
EOF
}

OUT=out/gpu_check STEPS=300 CPU_STEPS=20 PREPARE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out|--steps|--cpu-steps)
      [ $# -ge 2 ] || { echo "gpu_check: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) OUT=$2 ;; --steps) STEPS=$2 ;; *) CPU_STEPS=$2 ;; esac
      shift 2 ;;
    --prepare) PREPARE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$STEPS" "$CPU_STEPS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_check: steps must be positive integers, not '$n'" >&2; exit 2; }
done

DATA=cache/gpu_check  # rendered training drives (the key includes the settings below)
TRAIN_SETTINGS=(--set 'train_seeds=[0,1]' --set frames_per_sequence=24 --set "cache_dir=$DATA"
                --set checkpoint_every=100000 --set log_every=5 --no-progress)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -z "${PYTHON:-}" ]; then  # the first interpreter whose torch sees a GPU, else the first with torch
  for want in cuda torch; do
    for py in .venv/bin/python python3; do
      if "$py" -c "import sys, torch; sys.exit('$want' == 'cuda' and not torch.cuda.is_available())" 2>/dev/null
      then PYTHON=$py; break 2; fi
    done
  done
fi
PYTHON=${PYTHON:-python3}
PERCEPTION=("$PYTHON" -m perception.cli)

if [ "$PREPARE" = 1 ]; then  # one CPU step renders exactly the drives the timed runs will read
  "${PERCEPTION[@]}" train --device cpu --steps 1 --out "$OUT/runs/prepare" "${TRAIN_SETTINGS[@]}" \
    && echo "gpu_check: training drives rendered into $DATA; bring that folder to the GPU machine"
  exit $?
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --target "$OUT/site" .whl/*.whl || exit 1
  export PYTHONPATH="$OUT/site:$PYTHONPATH"
fi

if ! "$PYTHON" - <<'EOF'
import sys
try:
    import torch
except ImportError as e:
    sys.exit(f"gpu_check: error: PyTorch is not importable ({e}); set PYTHON to an interpreter that has it")
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: error: no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) "
             "sees no GPU. make gpu-check needs an NVIDIA GPU; on a CPU machine use `make test` and "
             "`perception bench runtime --device cpu`.")
EOF
then
  exit 2
fi

rm -rf "$OUT/runs" && mkdir -p "$OUT/runs"
: >"$OUT/status.txt"
"$PYTHON" -c "import platform, torch; p = torch.cuda.get_device_properties(0)
print(f'{p.name} ({p.total_memory / 2**30:.0f} GiB, cc {p.major}.{p.minor}), torch {torch.__version__}, '
      f'CUDA {torch.version.cuda}, Python {platform.python_version()}')" >"$OUT/machine.txt"
cat "$OUT/machine.txt"

FAILED=0
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to OUT/NAME.log, record the outcome
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  local what="ok"
  [ "$rc" = 0 ] || { what="FAILED (exit $rc$([ "$rc" = 124 ] && echo ', timed out'); see $OUT/$name.log)"; FAILED=1; }
  echo "$name: $what, $((SECONDS - t0)) s" | tee -a "$OUT/status.txt"
}

mapfile -t GPU_TESTS < <(grep -rlE "pytest\.mark\.gpu\b" test --include='*.py' | sort)
if [ "${#GPU_TESTS[@]}" -gt 0 ]; then
  step tests 120 "$PYTHON" -m pytest -p no:cacheprovider -m gpu -q -rs --junitxml="$OUT/tests.xml" "${GPU_TESTS[@]}"
else
  echo "tests: FAILED (no test is marked @pytest.mark.gpu)" | tee -a "$OUT/status.txt"; FAILED=1
fi
step bench 180 "${PERCEPTION[@]}" bench runtime --device cuda --compile --iters 20 --warmup 3 \
  --cache-dir "$OUT/cache" --out "$OUT"
step pipeline 120 "${PERCEPTION[@]}" bench pipeline --backends torch-cuda,torch-cuda-host --frames 20 --warmup 3 \
  --out "$OUT"
if [ ! -d "$DATA" ] && ! "$PYTHON" -c "import open3d" 2>/dev/null; then
  echo "train: FAILED (no rendered drives in $DATA and no open3d here: run scripts/gpu_check.sh --prepare" \
       "on the dev machine and bring $DATA along)" | tee -a "$OUT/status.txt"
  FAILED=1
else
  step train_cuda 150 "${PERCEPTION[@]}" train --device cuda --steps "$STEPS" --out "$OUT/runs/cuda" "${TRAIN_SETTINGS[@]}"
  step train_cpu 120 "${PERCEPTION[@]}" train --device cpu --steps "$CPU_STEPS" --out "$OUT/runs/cpu" "${TRAIN_SETTINGS[@]}"
fi

echo
"$PYTHON" scripts/gpu_check_summary.py "$OUT"
exit "$FAILED"
