#!/usr/bin/env bash
# Builds the ROS 2 interface packages no registry ships as wheels into a venv with pip-installed
# ROS 2 wheels, each ONLY when it is not importable there:
#   interfaces/vision_msgs               vision_msgs 4.x-compatible (Detection2D/3D arrays, ...)
#   interfaces/autoware_perception_msgs  autoware_msgs 1.12.0 verbatim (DetectedObjects, TrackedObjects, ...)
#   interfaces/foxglove_msgs             foxglove_msgs 3.1.0, the ImageAnnotations subset
#   interfaces/tf2_msgs                  tf2_msgs (ros2/geometry2), the TFMessage subset (/tf, /tf_static)
# Idempotent: a stamp per package (hash of its definitions) skips the build when nothing changed.
# Usage: scripts/build_interfaces.sh [package ...]   (default: all four)
#
# Recipe (shared/ENVIRONMENT.md): plain cmake with AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH = the
# venv, install prefix = the venv, after rewriting the build container's Python/numpy include
# paths in the wheels' *__rosidl_generator_pyExport.cmake files to this interpreter's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"

# package -> the Python import that proves it is installed (a real ROS 2 install or an earlier build)
declare -A PROBE=(
  [vision_msgs]="from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo"
  [autoware_perception_msgs]="from autoware_perception_msgs.msg import DetectedObjects, TrackedObjects, PredictedObjects"
  [foxglove_msgs]="from foxglove_msgs.msg import ImageAnnotations"
  [tf2_msgs]="from tf2_msgs.msg import TFMessage"
)
PACKAGES=("$@")
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(vision_msgs autoware_perception_msgs foxglove_msgs tf2_msgs)

prepared=0
prepare() {  # once per run, only when something must be built
  [ "$prepared" = 1 ] && return 0
  "$PY" -c "import rclpy, unique_identifier_msgs.msg" 2>/dev/null \
    || { echo "[interfaces] rclpy / unique_identifier_msgs missing in $VENV: install requirements-ros.txt first" >&2; exit 1; }
  local py_inc np_inc f
  py_inc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  np_inc=$("$PY" -c "import numpy; print(numpy.get_include())")
  # Rewrite the wheels' build-container include paths (idempotent: only the foreign prefix is replaced).
  for f in "$VENV"/share/*/cmake/*__rosidl_generator_pyExport.cmake; do
    [ -f "$f" ] || continue
    if grep -q '/opt/python/cp311-cp311' "$f"; then
      sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
             -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" "$f"
    fi
  done
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export PATH="$VENV/bin:$PATH"
  local site
  site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  prepared=1
}

build_one() {
  local pkg=$1 src=interfaces/$1 probe=${PROBE[$1]:-}
  [ -n "$probe" ] && [ -d "$src" ] || { echo "[interfaces] unknown package '$pkg' (known: ${!PROBE[*]})" >&2; exit 1; }
  local stamp="$VENV/.${pkg}-built" want
  want=$(cat "$src"/package.xml "$src"/CMakeLists.txt "$src"/msg/*.msg | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "$probe" 2>/dev/null; then
    return 0
  fi
  if [ ! -f "$stamp" ] && "$PY" -c "$probe" 2>/dev/null; then
    echo "[interfaces] $pkg is already importable (a ROS 2 install): nothing to build"
    return 0
  fi
  prepare
  echo "[interfaces] building $pkg (compatibility package) into $VENV"
  local build t0=$SECONDS
  build=$(mktemp -d "${TMPDIR:-/tmp}/${pkg}_build.XXXXXX")
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_BUILD_TYPE=Release \
        -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$build/configure.log" 2>&1 \
    || { tail -40 "$build/configure.log" >&2; exit 1; }
  cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log" >&2; exit 1; }
  cmake --install "$build" >"$build/install.log" 2>&1 || { tail -40 "$build/install.log" >&2; exit 1; }
  rm -rf "$build"
  "$PY" -c "$probe" || { echo "[interfaces] built, but '$probe' fails in $VENV" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "[interfaces] $pkg installed into $VENV ($((SECONDS - t0)) s)"
}

for pkg in "${PACKAGES[@]}"; do
  build_one "$pkg"
done
