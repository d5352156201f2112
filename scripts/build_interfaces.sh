#!/usr/bin/env bash
# Builds the vision_msgs 4.x-compatible interface package (interfaces/vision_msgs) into a venv
# with pip-installed ROS 2 wheels, ONLY when `vision_msgs` is not importable there. Idempotent:
# a stamp (hash of the definitions) skips the build when nothing changed.
#
# Recipe (shared/ENVIRONMENT.md): plain cmake with AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH = the
# venv, install prefix = the venv, after rewriting the build container's Python/numpy include
# paths in the wheels' *__rosidl_generator_pyExport.cmake files to this interpreter's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
SRC=interfaces/vision_msgs
stamp="$VENV/.vision_msgs-built"
want=$(cat "$SRC"/package.xml "$SRC"/CMakeLists.txt "$SRC"/msg/*.msg | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import vision_msgs.msg" 2>/dev/null; then
  exit 0
fi
if [ ! -f "$stamp" ] && "$PY" -c "import vision_msgs.msg; vision_msgs.msg.LabelInfo" 2>/dev/null; then
  echo "[interfaces] vision_msgs is already importable (a ROS 2 install): nothing to build"
  exit 0
fi
"$PY" -c "import rclpy" 2>/dev/null || { echo "[interfaces] rclpy missing in $VENV: install requirements-ros.txt first" >&2; exit 1; }

echo "[interfaces] building vision_msgs (compatibility package) into $VENV"
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

build=$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")
trap 'rm -rf "$build"' EXIT
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
cmake -S "$SRC" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_BUILD_TYPE=Release \
      -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$build/configure.log" 2>&1 \
  || { tail -40 "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log" >&2; exit 1; }
cmake --install "$build" >"$build/install.log" 2>&1 || { tail -40 "$build/install.log" >&2; exit 1; }
"$PY" -c "from vision_msgs.msg import Detection2DArray, LabelInfo" \
  || { echo "[interfaces] built, but 'import vision_msgs' fails in $VENV" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[interfaces] vision_msgs installed into $VENV"
