#!/usr/bin/env bash
# Smoke test of the built package on this machine (as root, where installing is allowed):
# install with dpkg -i, check-config the installed config, run the daemon for 10 s as the
# edgecam user on the test pattern and check /healthz, then remove and purge, checking
# what stays and what goes. Usage: packaging/smoke-test.sh path/to/edgecam_*.deb
set -euo pipefail
deb="${1:?usage: smoke-test.sh edgecam_VERSION_ARCH.deb}"
[[ "$(id -u)" == 0 ]] || { echo "smoke-test: run as root (it installs the package)" >&2; exit 2; }
if dpkg -s edgecam >/dev/null 2>&1; then
  echo "smoke-test: edgecam is already installed here; purge it first" >&2; exit 2
fi
fail() { echo "smoke-test: FAIL: $*" >&2; exit 1; }
step() { echo "smoke-test: $*"; }

step "installing $deb"
apt-get install -y "$(realpath "$deb")" >/dev/null
[[ -x /usr/bin/edgecam ]] || fail "/usr/bin/edgecam missing"
[[ -f /etc/edgecam/edgecam.toml ]] || fail "/etc/edgecam/edgecam.toml missing"
[[ -f /usr/share/edgecam/pipelines/test-pattern.pipeline ]] || fail "pipelines missing"
[[ -f /lib/systemd/system/edgecam.service ]] || fail "systemd unit missing"
getent passwd edgecam >/dev/null || fail "no edgecam user"
[[ "$(stat -c %U:%a /var/lib/edgecam)" == "edgecam:750" ]] || fail "/var/lib/edgecam owner/mode: $(stat -c %U:%a /var/lib/edgecam)"
[[ "$(stat -c %U:%G:%a /etc/edgecam/edgecam.toml)" == "root:edgecam:640" ]] || fail "config owner/mode"
edgecam version

step "check-config"
runuser -u edgecam -- edgecam check-config /etc/edgecam/edgecam.toml

step "the object detector on the test scene's photograph"
[[ -f /usr/share/edgecam/models/yolov3-tiny-320.onnx ]] || fail "the detector's model missing"
[[ -f /usr/share/edgecam/scene/person.png ]] || fail "the test scene's person missing"
# The close-up portrait scores about 0.25 as a person (in the scene, smaller, 0.9): ask
# from 0.2, with the installed model (detect.model's default).
conf="$(mktemp --suffix=.toml)"
printf '[detect]\nmin_score = 0.2\n' >"$conf"
chmod 644 "$conf"
found="$(runuser -u edgecam -- edgecam --config "$conf" \
  detect /usr/share/edgecam/scene/person.png --runs 1)" || fail "edgecam detect: $found"
rm -f "$conf"
echo "$found"
grep -q '^person' <<<"$found" || fail "the detector found no person in the scene's photograph"

step "running the daemon for 10 s as edgecam"
# setpriv execs the daemon itself, so $! is its pid and SIGTERM reaches it alone.
setpriv --reuid=edgecam --regid=edgecam --init-groups -- edgecam run --config /etc/edgecam/edgecam.toml &
pid=$!
healthy=""
for _ in $(seq 1 50); do
  if curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.2
done
[[ -n "$healthy" ]] || { kill "$pid" 2>/dev/null; fail "/healthz never answered"; }
sleep 10
curl -fsS http://127.0.0.1:8080/healthz || { kill "$pid"; fail "/healthz after 10 s"; }
echo
curl -fsS http://127.0.0.1:8080/metrics | grep -E '^edgecam_frames_captured_total [1-9]' \
  || { kill "$pid"; fail "no frames captured"; }
kill -TERM "$pid"
wait "$pid" || fail "daemon exit status $?"
[[ -f /var/lib/edgecam/index.sqlite3 ]] || fail "no index in /var/lib/edgecam"

step "remove: config and data stay"
dpkg -r edgecam >/dev/null
[[ ! -e /usr/bin/edgecam ]] || fail "binary left after remove"
[[ -f /etc/edgecam/edgecam.toml ]] || fail "conffile gone after remove"
[[ -d /var/lib/edgecam ]] || fail "data gone after remove"

step "purge: config, data and user go"
dpkg -P edgecam >/dev/null
[[ ! -e /etc/edgecam/edgecam.toml ]] || fail "conffile left after purge"
[[ ! -e /var/lib/edgecam ]] || fail "data left after purge"
! getent passwd edgecam >/dev/null || fail "user left after purge"
step "OK"
