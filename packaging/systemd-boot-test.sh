#!/usr/bin/env bash
# shellcheck disable=SC2015  # `check && pass ... || fail ...`: pass never fails.
# Checks the packaged systemd unit under a real systemd (issue #7), as root:
# debootstraps a Debian root (cached), boots it with `systemd-nspawn --boot` (systemd as
# PID 1, cgroup v2, no network but loopback), installs the .deb there with apt-get (the
# postinst enables and starts edgecam.service), then checks that the hardened unit
# records and serves HTTP, that `systemd-analyze security` rates it at most 2.5, that the
# journal has no sandbox denials, that the watchdog is fed and enforced, that stop is
# clean and that purge removes it. Prints PASS/FAIL lines; exits 1 if any check failed.
#
# Usage: packaging/systemd-boot-test.sh path/to/edgecam_VERSION_amd64.deb [WORKDIR]
#   WORKDIR (default /var/tmp/edgecam-systemd-test) keeps the pristine root (base/), the
#   downloaded packages (apt-archives/) and the logs of the last run (logs/); the root the
#   test boots (run/) is a fresh copy, deleted afterwards. `rm -rf WORKDIR` forgets all.
# Environment: SUITE (bookworm), MIRROR, SECURITY_MIRROR, KEEP=1 (leave run/ for a look),
#   WATCHDOG_KILL=0 (skip freezing the daemon to see the watchdog restart it, ~30 s).
# Works on a host with or without systemd as PID 1 (containers, CI VMs): without it, the
# container is registered nowhere and runs in a cgroup of its own, removed afterwards.
set -euo pipefail

deb="${1:?usage: systemd-boot-test.sh edgecam_VERSION_amd64.deb [WORKDIR]}"
work="${2:-/var/tmp/edgecam-systemd-test}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
KEEP="${KEEP:-0}"
WATCHDOG_KILL="${WATCHDOG_KILL:-1}"
MACHINE=edgecam-systemd-test
MAX_EXPOSURE=2.5
LABEL=systemd-boot-test

die() { echo "systemd-boot-test: $*" >&2; exit 2; }
step() { echo "== $* ($((SECONDS))s)"; }
npass=0
nfail=0
pass() { echo "PASS $*"; npass=$((npass + 1)); }
fail() { echo "FAIL $*"; nfail=$((nfail + 1)); }

[[ "$(id -u)" == 0 ]] || die "run as root (it debootstraps and boots a container)"
[[ -f "$deb" ]] || die "no such package: $deb"
deb="$(realpath "$deb")"
debname="$(basename "$deb")"
[[ "$debname" == *.deb ]] || die "not a .deb: $deb"
[[ "$(dpkg --print-architecture 2>/dev/null || uname -m)" =~ ^(amd64|x86_64)$ ]] \
  || die "this host is not amd64"
[[ "$(dpkg-deb -f "$deb" Architecture)" == amd64 ]] || die "$debname is not an amd64 package"
[[ "$work" == /* && "$work" != / ]] || die "WORKDIR must be an absolute path other than /"

# --- host tools --------------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if ((${#need[@]})); then
  command -v apt-get >/dev/null || die "install ${need[*]} (no apt-get here)"
  step "installing ${need[*]} on this host"
  apt-get update -qq
  # No recommends: libnss-mymachines would edit /etc/nsswitch.conf.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for t in nsenter flock findmnt timeout; do command -v $t >/dev/null || die "$t missing"; done

mkdir -p "$work" "$work/apt-archives" "$work/logs"
exec 9>"$work/.lock"
flock -n 9 || die "another run uses $work"
base="$work/base"
root="$work/run"
logs="$work/logs"
rm -f "$logs"/*

# --- how to run a container on this host --------------------------------------------------
# nspawn's own seccomp filter also denies bpf() (DevicePolicy= needs it), mlock() (libgcrypt,
# loaded by gst-plugin-scanner, then warns "using insecure memory") and the keyring calls
# (KeyringMode=): all three are allowed below, so that the unit's own SystemCallFilter=
# decides them, as on a device.
# With systemd as PID 1, nspawn registers with machined and gets a scope of its own. Without
# it (a container, a bare VM), nspawn must not look for the bus: --register=no --keep-unit,
# and it is started inside cgroups of ours so that its payload/ and supervisor/ go there.
host_systemd=0
[[ -d /run/systemd/system ]] && host_systemd=1
cg_dirs=()
if ((!host_systemd)); then
  if [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]]; then
    cg_dirs=("/sys/fs/cgroup/$MACHINE")
  else
    [[ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" == cgroup2fs ]] \
      && cg_dirs+=("/sys/fs/cgroup/unified/$MACHINE")
    [[ -d /sys/fs/cgroup/systemd ]] && cg_dirs+=("/sys/fs/cgroup/systemd/$MACHINE")
  fi
  ((${#cg_dirs[@]})) || die "no cgroup hierarchy for systemd under /sys/fs/cgroup"
fi
# A cgroup v2 hierarchy for the container's systemd, as on a Debian 12 machine (with a
# hybrid host nspawn would otherwise give it the legacy one, where DevicePolicy= is moot).
cg2=0
[[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs || \
   "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" == cgroup2fs ]] && cg2=1
nspawn_opts=(--quiet --settings=no --link-journal=no)
if ((host_systemd)); then
  nspawn_opts+=(--machine="$MACHINE")
else
  nspawn_opts+=(--machine="$MACHINE" --register=no --keep-unit)
fi

remove_cgroups() {
  local d
  for d in "${cg_dirs[@]}"; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# Runs systemd-nspawn (arguments as given) in the foreground or, with NSPAWN_BG=1, in the
# background; with no systemd on the host, inside our cgroups.
nspawn() {
  local d
  if ((!host_systemd)); then
    for d in "${cg_dirs[@]}"; do mkdir -p "$d"; done
  fi
  local -a envs=()
  ((cg2)) && envs=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
  if [[ "${NSPAWN_BG:-0}" == 1 ]]; then
    (
      for d in "${cg_dirs[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
      exec env "${envs[@]}" systemd-nspawn "${nspawn_opts[@]}" "$@"
    ) </dev/null >"$logs/nspawn.log" 2>&1 &
    nspawn_pid=$!
  else
    (
      for d in "${cg_dirs[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
      exec env "${envs[@]}" systemd-nspawn "${nspawn_opts[@]}" "$@"
    ) </dev/null
  fi
}

nspawn_pid=""
leader=""
# Runs a command in the booted container (all its namespaces, a clean environment).
ct() {
  timeout "${CT_TIMEOUT:-120}" nsenter --target "$leader" --all -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive "$@"
}

stop_container() {
  [[ -n "$nspawn_pid" ]] || return 0
  if kill -0 "$nspawn_pid" 2>/dev/null; then
    [[ -n "$leader" ]] && CT_TIMEOUT=20 ct systemctl poweroff --no-block >/dev/null 2>&1
    for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      kill -TERM "$nspawn_pid" 2>/dev/null; sleep 5
      kill -KILL "$nspawn_pid" 2>/dev/null
    fi
  fi
  wait "$nspawn_pid" 2>/dev/null
  nspawn_pid=""
  leader=""
  return 0
}

cleanup() {
  local rc=$?
  set +e
  # A signal may land inside a redirected command: print to the script's own output.
  exec 1>&7 2>&8
  [[ -n "$nspawn_pid" || -d "$root" ]] && echo "== cleanup ($((SECONDS))s)"
  stop_container
  rm -f "$work/nspawn.pid"
  remove_cgroups
  ((host_systemd)) || rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
  if [[ "$KEEP" == 1 ]]; then
    echo "systemd-boot-test: kept $root (boot it: systemd-nspawn -D $root --boot)"
  elif [[ -d "$root" ]]; then
    # Never delete through a mount left behind.
    mounts="$(findmnt -rn -o TARGET || true)"
    if grep -q "^$root\(/\|$\)" <<<"$mounts"; then
      echo "systemd-boot-test: mounts left under $root; not deleting it" >&2
    else
      rm -rf "$root"
    fi
  fi
  echo "systemd-boot-test: exit $rc after $((SECONDS))s"
}
exec 7>&1 8>&2
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A run killed hard leaves its container behind: stop it first.
if [[ -f "$work/nspawn.pid" ]]; then
  old="$(cat "$work/nspawn.pid")"
  cmdline="$(tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null || true)"
  if [[ "$old" =~ ^[0-9]+$ && "$cmdline" == *systemd-nspawn*"$MACHINE"* ]]; then
    echo "systemd-boot-test: stopping the container of an earlier run (pid $old)"
    kill -TERM "$old" 2>/dev/null || true; sleep 5; kill -KILL "$old" 2>/dev/null || true
  fi
  rm -f "$work/nspawn.pid"
fi
if ((host_systemd)) && command -v machinectl >/dev/null; then
  machinectl terminate "$MACHINE" >/dev/null 2>&1 && sleep 3 || true
fi
remove_cgroups

# --- the pristine root (once) --------------------------------------------------------------
if [[ ! -f "$base/.edgecam-base-ready" ]]; then
  step "debootstrap $SUITE into $base (once; a few minutes)"
  rm -rf "$base" "$base.tmp"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,ca-certificates \
    "$SUITE" "$base.tmp" "$MIRROR" >"$logs/debootstrap.log" 2>&1 \
    || { tail -20 "$logs/debootstrap.log"; die "debootstrap failed (log: $logs/debootstrap.log)"; }
  cat >"$base.tmp/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  echo "$MACHINE" >"$base.tmp/etc/hostname"
  touch "$base.tmp/.edgecam-base-ready"
  mv "$base.tmp" "$base"
fi

step "fresh root $root"
rm -rf "$root"
cp -a --reflink=auto "$base" "$root"
cp "$deb" "$root/root/$debname"
# No apt timers taking the dpkg lock in the middle of the test.
ln -sf /dev/null "$root/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$root/etc/systemd/system/apt-daily-upgrade.timer"

step "downloading $debname's dependencies (host network; cached in $work/apt-archives)"
nspawn -D "$root" --bind="$work/apt-archives:/var/cache/apt/archives" \
  -E DEBIAN_FRONTEND=noninteractive \
  /bin/sh -c "apt-get update -qq && apt-get install -y --download-only /root/$debname" \
  >"$logs/apt-download.log" 2>&1 \
  || { tail -20 "$logs/apt-download.log"; die "downloading dependencies failed"; }
remove_cgroups

# --- boot --------------------------------------------------------------------------------
step "booting $SUITE with systemd-nspawn --boot (loopback network only)"
NSPAWN_BG=1 nspawn -D "$root" --boot --private-network --console=passive --resolv-conf=off \
  --bind="$work/apt-archives:/var/cache/apt/archives" \
  --capability=CAP_BPF --system-call-filter='bpf @memlock @keyring'
echo "$nspawn_pid" >"$work/nspawn.pid"
for _ in $(seq 1 60); do
  leader="$(ps -o pid=,comm= --ppid "$nspawn_pid" 2>/dev/null | awk '$2 == "systemd" && !p {print $1; p = 1}' || true)"
  [[ -n "$leader" ]] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.5
done
[[ -n "$leader" ]] || { cat "$logs/nspawn.log"; die "the container did not boot"; }
state="$(CT_TIMEOUT=180 ct systemctl is-system-running --wait 2>/dev/null || true)"
echo "system state: $state (systemd $(ct systemctl --version | awk 'NR==1 {print $2}'), $(ct stat -fc %T /sys/fs/cgroup))"
if [[ "$state" != running ]]; then
  ct systemctl --failed --no-pager --plain || true
fi
[[ "$state" == running || "$state" == degraded ]] || die "the container's systemd did not come up ($state)"
pass "systemd booted as PID 1 in the container ($state)"

# Is DevicePolicy= enforced here (BPF device programs need cgroup v2 and bpf())? If not,
# the DeviceAllow= lines go untested, which is worth knowing but not a failure of edgecam.
if ct test -c /dev/net/tun; then
  if ct systemd-run --quiet --wait --pipe -p DevicePolicy=closed /bin/sh -c 'exec 3</dev/net/tun' 2>/dev/null; then
    echo "WARN DevicePolicy= is not enforced in this container: DeviceAllow= goes untested"
  else
    echo "INFO DevicePolicy= is enforced in this container (a closed policy denies /dev/net/tun)"
  fi
fi

# --- install -------------------------------------------------------------------------------
step "apt-get install /root/$debname (in the booted system)"
t0=$SECONDS
if CT_TIMEOUT=600 ct apt-get install -y -o DPkg::Lock::Timeout=120 "/root/$debname" >"$logs/apt-install.log" 2>&1; then
  pass "apt-get install ($((SECONDS - t0)) s)"
else
  tail -30 "$logs/apt-install.log"
  fail "apt-get install (log: $logs/apt-install.log)"
  exit 1
fi
started=$SECONDS

# --- the running service -------------------------------------------------------------------
step "service"
state=""
for _ in $(seq 1 60); do
  state="$(ct systemctl is-active edgecam 2>/dev/null || true)"
  [[ "$state" == active || "$state" == failed ]] && break
  sleep 1
done
[[ "$state" == active ]] && pass "systemctl is-active edgecam: active" || fail "systemctl is-active edgecam: $state"
[[ "$(ct systemctl is-enabled edgecam 2>/dev/null)" == enabled ]] \
  && pass "systemctl is-enabled edgecam: enabled" || fail "edgecam.service not enabled"
show="$(ct systemctl show edgecam -p Type -p NRestarts -p MainPID -p WatchdogUSec -p Result | sort | tr '\n' ' ' || true)"
echo "systemctl show: $show"
prop() { ct systemctl show edgecam -p "$1" --value 2>/dev/null || true; }
main_pid="$(prop MainPID)"
[[ "$(prop Type)" == notify && "$(prop NRestarts)" == 0 && "$main_pid" != 0 ]] \
  && pass "Type=notify, NRestarts=0, MainPID=$main_pid" || fail "unexpected: $show"
status="$(ct cat "/proc/$main_pid/status" 2>/dev/null || true)"
uid="$(awk '/^Uid:/ {print $2}' <<<"$status")"
sandbox="uid $(ct getent passwd "$uid" | cut -d: -f1 || true) NoNewPrivs $(awk '/^NoNewPrivs:/ {print $2}' <<<"$status") Seccomp $(awk '/^Seccomp:/ {print $2}' <<<"$status") CapEff $(awk '/^CapEff:/ {print $2}' <<<"$status")"
[[ "$sandbox" == "uid edgecam NoNewPrivs 1 Seccomp 2 CapEff 0000000000000000" ]] \
  && pass "daemon sandboxed: $sandbox" || fail "daemon sandbox: $sandbox"

# --- HTTP ----------------------------------------------------------------------------------
step "HTTP on 127.0.0.1:8080"
health=""
for _ in $(seq 1 30); do
  health="$(ct curl -fsS --max-time 5 http://127.0.0.1:8080/healthz 2>/dev/null)" && break
  sleep 1
done
[[ -n "$health" ]] && pass "/healthz: $health" || fail "/healthz did not answer"
page="$(ct curl -fsS --max-time 5 http://127.0.0.1:8080/ 2>/dev/null || true)"
grep -qi '<html' <<<"$page" && pass "viewer page / is HTML ($(wc -c <<<"$page") bytes)" \
  || fail "viewer page / did not answer HTML"
frames() {
  ct curl -fsS --max-time 5 http://127.0.0.1:8080/metrics 2>/dev/null \
    | awk '$1 == "edgecam_frames_captured_total" {print $2}' || true
}
f1="$(frames)"; sleep 5; f2="$(frames)"
if [[ "$f1" =~ ^[0-9]+$ && "$f2" =~ ^[0-9]+$ ]] && ((f2 > f1)); then
  pass "/metrics edgecam_frames_captured_total $f1 -> $f2 in 5 s (+$((f2 - f1)))"
else
  fail "/metrics edgecam_frames_captured_total did not grow: '$f1' -> '$f2'"
fi

# --- recording -----------------------------------------------------------------------------
step "recording: edgecam trigger, then the clip"
as_edgecam() { ct runuser -u edgecam -- edgecam "$@" --config /etc/edgecam/edgecam.toml; }
if reply="$(as_edgecam trigger --duration 2 --label "$LABEL" 2>&1)"; then
  pass "edgecam trigger: $reply"
else
  fail "edgecam trigger: $reply"
fi
# A trigger during a motion event (the test pattern's ball moves 10 s of every 40)
# extends that event, which keeps its label: look for a complete clip of the event the
# trigger names.
event="$(sed -n 's/.*"event_id":"\([^"]*\)".*/\1/p' <<<"$reply")"
clip=""
for _ in $(seq 1 30); do
  sleep 2
  clip="$(as_edgecam clips list --json 2>/dev/null | awk -v e="$event" '
    /"id":/ { gsub(/[",]/, "", $2); id = $2 }
    /"event_id":/ { gsub(/[",]/, "", $2); ev = $2 }
    /"status":/ { gsub(/[",]/, "", $2); if (ev == e && $2 == "complete" && !p) { print id; p = 1 } }
  ' || true)"
  [[ -n "$clip" ]] && break
done
if [[ -n "$clip" ]]; then
  as_edgecam clips list | sed 's/^/  /' || true
  file="$(ct find /var/lib/edgecam/clips -name "$clip.mp4" -size +1k 2>/dev/null || true)"
  magic="$(ct head -c 12 "${file:-/dev/null}" 2>/dev/null | tr -dc '[:lower:]' || true)"
  if [[ -n "$file" && "$magic" == *ftyp* ]]; then
    pass "clip $clip complete: $file ($(ct stat -c %s "$file") bytes, MP4)"
    as_edgecam clips show "$clip" 2>&1 | sed 's/^/  /' || true
  else
    fail "clip $clip listed but no MP4 file under /var/lib/edgecam/clips"
  fi
else
  as_edgecam clips list 2>&1 | sed 's/^/  /' || true
  ct find /var/lib/edgecam/clips -type f 2>&1 | sed 's/^/  /' || true
  fail "no complete clip of event ${event:-?} (label $LABEL) within 60 s"
fi

# --- systemd-analyze security (online: the loaded unit) ------------------------------------
step "systemd-analyze security edgecam.service"
ct systemd-analyze security edgecam.service --no-pager >"$logs/security.txt" 2>&1 || true
grep '✗' "$logs/security.txt" | sed 's/^/  /' || true
exposure="$(sed -n 's/.*Overall exposure level for edgecam.service: \([0-9.]*\).*/\1/p' "$logs/security.txt")"
echo "  $(grep 'Overall exposure' "$logs/security.txt" || echo "no overall exposure line")"
if [[ -n "$exposure" ]] && awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(e <= m)}'; then
  pass "exposure $exposure <= $MAX_EXPOSURE (full table: $logs/security.txt)"
else
  fail "exposure '${exposure:-?}' is not <= $MAX_EXPOSURE (see $logs/security.txt)"
fi

# --- watchdog fed --------------------------------------------------------------------------
step "watchdog"
wd="$(prop WatchdogUSec)"
# The daemon pings every WatchdogSec/2 while frames flow; past WatchdogSec with the same
# process shows the pings arrive (NotifyAccess=main).
while ((SECONDS - started < 40)); do sleep 1; done
if [[ "$(prop NRestarts)" == 0 && "$(prop MainPID)" == "$main_pid" && "$(ct systemctl is-active edgecam)" == active ]]; then
  pass "WatchdogUSec=$wd; same process after $((SECONDS - started)) s, no restart: the pings arrive"
else
  fail "watchdog: restarted within $((SECONDS - started)) s ($(prop NRestarts) restarts, Result=$(prop Result))"
fi

# --- journal -------------------------------------------------------------------------------
step "journal of edgecam.service"
ct journalctl -u edgecam --no-pager -o short-monotonic >"$logs/journal-edgecam.txt" 2>&1 || true
ct journalctl -b --no-pager -o short-monotonic >"$logs/journal-all.txt" 2>&1 || true
tail -15 "$logs/journal-edgecam.txt" | cut -c1-220 | sed 's/^/  /'
# Seccomp kills (SIGSYS), EPERM from SystemCallErrorNumber=, denied paths, watchdog
# timeouts, crashes, the daemon's own ERROR lines, and libgcrypt's warning when mlock() fails.
bad='SIGSYS|status=31|Bad system call|Operation not permitted|Permission denied|Read-only file system|EACCES|EPERM|Watchdog timeout|Failed with result|code=dumped|core-dump|panicked| ERROR |insecure memory'
if grep -E "$bad" "$logs/journal-edgecam.txt" >"$logs/journal-denials.txt"; then
  sed 's/^/  /' "$logs/journal-denials.txt" | cut -c1-220
  fail "journal has sandbox denials or failures (above; $logs/journal-edgecam.txt)"
else
  pass "journal: no SIGSYS, EPERM/EACCES, watchdog or failure lines ($(wc -l <"$logs/journal-edgecam.txt") lines)"
fi

# --- watchdog enforced ---------------------------------------------------------------------
if [[ "$WATCHDOG_KILL" == 1 ]]; then
  step "watchdog: freezing the daemon (SIGSTOP), systemd must restart it"
  ct kill -STOP "$main_pid" || true
  t0=$SECONDS
  restarted=0
  while ((SECONDS - t0 < 90)); do
    sleep 2
    new_pid="$(prop MainPID)"
    if [[ "$(prop NRestarts)" -ge 1 && "$new_pid" != "$main_pid" && "$new_pid" != 0 \
          && "$(ct systemctl is-active edgecam)" == active ]]; then
      restarted=1; break
    fi
  done
  journal="$(ct journalctl -u edgecam --no-pager 2>/dev/null || true)"
  if ((restarted)) && grep -q "Failed with result 'watchdog'" <<<"$journal"; then
    pass "watchdog killed the frozen daemon and systemd restarted it in $((SECONDS - t0)) s (MainPID $main_pid -> $new_pid)"
    main_pid="$new_pid"
    for _ in $(seq 1 30); do ct curl -fsS --max-time 5 http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break; sleep 1; done
    ct curl -fsS --max-time 5 http://127.0.0.1:8080/healthz >/dev/null 2>&1 \
      && pass "/healthz after the restart" || fail "/healthz after the restart"
  else
    ct kill -CONT "$main_pid" 2>/dev/null || true
    fail "watchdog did not restart the frozen daemon within 90 s (NRestarts=$(prop NRestarts))"
  fi
fi

# --- stop and purge ------------------------------------------------------------------------
step "systemctl stop edgecam"
t0=$(date +%s%N)
if ct systemctl stop edgecam; then rc=0; else rc=$?; fi
ms=$((($(date +%s%N) - t0) / 1000000))
result="$(prop Result)"
stop_limit_s="$(prop TimeoutStopUSec | sed -n 's/^\([0-9][0-9]*\)s$/\1/p')"
stop_limit_s="${stop_limit_s:-10}"
journal="$(ct journalctl -u edgecam --no-pager -n 20 2>/dev/null || true)"
if ((rc == 0)) && [[ "$result" == success ]] && ((ms < stop_limit_s * 1000)) \
   && grep -q 'edgecam stopped' <<<"$journal"; then
  pass "stopped cleanly in $ms ms (Result=$result, TimeoutStopSec=${stop_limit_s}s)"
else
  tail -10 <<<"$journal" | sed 's/^/  /'
  fail "stop: rc $rc, Result=$result, $ms ms"
fi

step "apt-get purge edgecam"
if CT_TIMEOUT=300 ct apt-get purge -y -o DPkg::Lock::Timeout=120 edgecam >"$logs/apt-purge.log" 2>&1 \
   && [[ "$(prop LoadState)" == not-found ]] \
   && ! ct getent passwd edgecam >/dev/null && ! ct test -e /var/lib/edgecam; then
  pass "purge removed the unit, the user and /var/lib/edgecam"
else
  fail "purge (log: $logs/apt-purge.log; LoadState=$(prop LoadState))"
fi

step "done"
echo "exposure: ${exposure:-?}  frames: ${f1:-?} -> ${f2:-?}  clip: ${clip:-none}  time: ${SECONDS}s"
if ((nfail)); then
  echo "RESULT: FAIL ($nfail of $((npass + nfail)) checks failed; logs in $logs)"
  exit 1
fi
echo "RESULT: PASS ($npass checks; logs in $logs)"
