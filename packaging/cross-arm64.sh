#!/usr/bin/env bash
# Cross-builds the arm64 Debian package on a Debian 12 amd64 machine with Debian
# multiarch: the arm64 GStreamer development files, the aarch64 cross compiler, and the
# Rust aarch64 standard library. `make deb-arm64` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgecam/target}"
export PATH="$HOME/.cargo/bin:$PATH"
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -q
fi
# The arm64 plugins are only for checking the binary's pipelines under qemu.
need=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgstreamer1.0-dev:arm64
      libgstreamer-plugins-base1.0-dev:arm64 libgstrtspserver-1.0-dev:arm64 qemu-user-static
      gstreamer1.0-plugins-base:arm64 gstreamer1.0-plugins-good:arm64
      gstreamer1.0-plugins-ugly:arm64 gstreamer1.0-plugins-bad:arm64
      gstreamer1.0-alsa:arm64)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian 12's arm64 GStreamer -dev packages replace the amd64 ones (they cannot be
# installed side by side): put the native ones back when this script ends, however it
# ends, so native builds and tests keep working.
native="$(dpkg --print-architecture)"
restore() {
  $sudo apt-get install -y -qq --no-install-recommends \
    "libgstreamer-plugins-base1.0-dev:$native" "libgstreamer-plugins-bad1.0-dev:$native" \
    "libgstreamer1.0-dev:$native" "libgstrtspserver-1.0-dev:$native" >/dev/null
}
trap restore EXIT
rustup target add aarch64-unknown-linux-gnu >/dev/null
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
cargo deb --strip --locked --target aarch64-unknown-linux-gnu

bin="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/edgecam"
echo "cross-arm64: checking the binary under qemu-aarch64"
# Load plugins in-process: the registry's helper is an arm64 program qemu would have to
# start by itself (binfmt), which a build machine need not have.
export GST_REGISTRY_FORK=no
qemu-aarch64-static "$bin" version
qemu-aarch64-static "$bin" check-config config/edgecam.toml
# The detector is in the arm64 build: run it on the test scene's photograph. The time is
# qemu's emulation on this machine, not an arm64 CPU's.
if [[ -f models/yolov3-tiny-320.onnx && -f scene/person.png ]]; then
  conf="$(mktemp --suffix=.toml)"
  printf '[detect]\nmodel = "%s"\nmin_score = 0.2\n' "$PWD/models/yolov3-tiny-320.onnx" >"$conf"
  echo "cross-arm64: the object detector under qemu-aarch64 (emulated: not a real arm64 CPU's time)"
  qemu-aarch64-static "$bin" --config "$conf" detect scene/person.png --runs 1
  rm -f "$conf"
fi
ls -l "$CARGO_TARGET_DIR"/debian/*arm64.deb
