#!/usr/bin/env bash
# Idempotent set-up of everything the project needs on a fresh Debian machine:
# apt packages (only those missing), a project venv at $VENV, Python dependencies, and the
# package itself (editable). Re-running it is cheap: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# systemd: `systemd-analyze verify` checks the units `perception vehicle install` writes (test/vehicle)
APT_PACKAGES=(libusb-1.0-0 libgomp1 python3-venv systemd)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# A pyenv/conda python brings its own venv module; only Debian's python3 needs python3-venv.
if "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing=("${missing[@]/python3-venv}")
fi
# The vision_msgs compatibility build (scripts/build_interfaces.sh) compiles C: cmake, a C/C++
# compiler and the interpreter's headers (Debian's python3 needs python3-dev; pyenv ships them).
for tool in cmake:cmake g++:g++ make:make; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if ! "$PYTHON" -c "import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then
  missing+=(python3-dev)
fi
if [ -n "$(echo "${missing[@]:-}" | tr -d ' ')" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.perception-installed"
want=$(cat requirements.txt requirements-ros.txt requirements-dev.txt setup.py | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python dependencies into $VENV (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# ROS 2 messages the project needs but no registry ships (vision_msgs 4.x-compatible,
# autoware_perception_msgs 1.12.0, the foxglove_msgs ImageAnnotations subset, tf2_msgs TFMessage), each built into the venv
# only when it is not importable (idempotent; once: ~40 s + ~60 s + ~140 s on 2 busy cores).
VENV="$VENV" bash scripts/build_interfaces.sh
