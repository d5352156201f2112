#!/usr/bin/env bash
# The image's entrypoint (docs/containers.md). The rig file is mounted at $PERCEPTION_RIG; engines, the ONNX model,
# the node's parameters and the unit live under $PERCEPTION_PREFIX (a volume: they survive the container).
#
#   node (default)  `perception vehicle install` for THIS machine (validates the rig, reuses the cached ONNX model
#                   and engine when they match this GPU / TensorRT / model, builds them otherwise: TensorRT engines
#                   are device-specific, so they are made here, on the target, never at `docker build`), then runs
#                   the unit it wrote under docker/supervise.py (READY / watchdog / timeouts as systemd would)
#   install         the install alone (prebuild engines into the volume before the first drive), then exit
#   check [ARGS]    `perception vehicle check` (pre-flight on the live graph; extra ARGS passed on)
#   health          the HEALTHCHECK: READY=1 seen and the node's last WATCHDOG=1 younger than WatchdogSec
#   anything else   run as a command (`perception_node --ros-args ...`, `perception --help`, `bash`)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RIG=${PERCEPTION_RIG:-/etc/perception/vehicle.yaml}
PREFIX=${PERCEPTION_PREFIX:-/var/lib/perception}
STATE=${PERCEPTION_STATE_DIR:-/tmp/perception}

need_rig() {
  if [ ! -f "$RIG" ]; then
    echo "entrypoint: no rig file at $RIG: mount yours (-v \$PWD/vehicle.yaml:$RIG:ro; start from" \
         "config/vehicle.example.yaml) or set PERCEPTION_RIG" >&2
    exit 2
  fi
}

install_rig() {  # prints the unit's path; the install's own messages go to stderr
  # --no-verify: no systemd runs these units here (docker/supervise.py reads them); on a host, install without it
  perception vehicle install --config "$RIG" --prefix "$PREFIX" --no-verify --json \
    | python -c 'import json, sys; print(json.load(sys.stdin)["unit"])'
}

cmd=${1:-node}
case "$cmd" in
  node)
    need_rig
    unit=$(install_rig)
    exec python "$HERE/supervise.py" run --unit "$unit" --state-dir "$STATE"
    ;;
  install)
    need_rig
    exec perception vehicle install --config "$RIG" --prefix "$PREFIX" --no-verify
    ;;
  check)
    need_rig
    shift
    exec perception vehicle check --config "$RIG" --prefix "$PREFIX" "$@"
    ;;
  health)
    exec python "$HERE/supervise.py" health --state-dir "$STATE"
    ;;
  *)
    exec "$@"
    ;;
esac
