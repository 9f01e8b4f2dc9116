#!/usr/bin/env bash
# Build the three release images (jessy-core, jessy-api, jessy-test) WITHOUT
# Nix and without a Dockerfile: cargo builds the release binaries, each image
# is a root filesystem directory (binary, its shared libraries and loader,
# /etc/passwd, /etc/group, CA bundle, /tmp 1777 -- and no shell) turned into a
# tar stream with fixed owners and mtimes and given to `docker import`.
#
# Everything that describes an image (user, env, port, entrypoint, healthcheck,
# labels, passwd/group content) is read from deploy/images.json, the file the
# Nix images (nix/) are built from too, so the two kinds of image cannot drift.
#
# Usage: tests/e2e/build-images.sh [--no-cargo]
#   --no-cargo   do not run cargo; take the binaries from JESSY_CORE_BIN,
#                JESSY_API_BIN and JESSY_BDD_BIN (e.g. built earlier / elsewhere)
# Environment:
#   JESSY_IMAGE_TAG     tag to give the images (default: "tag" of images.json)
#   SOURCE_DATE_EPOCH   mtime of every file and the "created" label
#                       (default: time of the HEAD commit, else 1)
#   JESSY_REVISION      org.opencontainers.image.revision (default: HEAD when
#                       the tracked tree is clean, "dirty" otherwise -- as the flake)
#   CARGO_TARGET_DIR    honoured by cargo as usual
set -euo pipefail

die() { echo "build-images: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: install $2"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

USE_CARGO=1
for arg in "$@"; do
  case "$arg" in
    --no-cargo) USE_CARGO=0 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

need docker "Docker Engine (https://docs.docker.com/engine/install/)"
need python3 "python3 (apt-get install python3)"
need tar "GNU tar (apt-get install tar)"
need ldd "ldd (apt-get install libc-bin)"
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (--sort/--mtime/--numeric-owner)"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"

DESC="$ROOT/deploy/images.json"
[ -f "$DESC" ] || die "missing $DESC"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA_BUNDLE" ] || die "missing $CA_BUNDLE: install ca-certificates (apt-get install ca-certificates)"

# Read one value of images.json: json_get '["images"]["jessy-core"]["port"]'
json_get() {
  python3 - "$DESC" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = eval("d" + sys.argv[2], {"d": d})
print(v if isinstance(v, str) else json.dumps(v))
PY
}

# ---------------------------------------------------------------- metadata --
if [ -n "${JESSY_REVISION:-}" ]; then
  REVISION=$JESSY_REVISION
elif rev=$(git rev-parse --verify -q HEAD 2>/dev/null) && git diff --quiet HEAD -- 2>/dev/null; then
  REVISION=$rev
else
  REVISION=dirty
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || true)
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1}
fi
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
VERSION=$(python3 -c '
import re, sys
text = open(sys.argv[1]).read()
pkg = text.split("[package]", 1)[1]
print(re.search(r"^version\s*=\s*\"([^\"]+)\"", pkg, re.M).group(1))' Cargo.toml)
TAG=${JESSY_IMAGE_TAG:-$(json_get '["tag"]')}

# A top-level string of images.json, written as is (no newline added).
json_raw() {
  python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DESC" "$1"
}

# ---------------------------------------------------------------- binaries --
# Pick the executables cargo reports (JSON messages on stdout).
cargo_executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = "test" if m.get("profile", {}).get("test") else "bin"
        print(kind, m["target"]["name"], m["executable"], sep="\t")
'
}

if [ "$USE_CARGO" = 1 ]; then
  need cargo "Rust (https://rustup.rs; the toolchain of rust-toolchain.toml)"
  [ -f Cargo.lock ] || die "Cargo.lock missing: --locked builds need it"
  # The binaries report it in /health, /status and jessy_build_info (src/lib.rs).
  export JESSY_GIT_REVISION=$REVISION
  echo "build-images: cargo build --release --locked --features otel --bins (revision $REVISION)" >&2
  bins=$(cargo build --release --locked --features otel --bins \
    --message-format json-render-diagnostics | cargo_executables)
  echo "build-images: cargo test --release --locked --features otel --no-run --test bdd" >&2
  tests=$(cargo test --release --locked --features otel --no-run --test bdd \
    --message-format json-render-diagnostics | cargo_executables)
  JESSY_CORE_BIN=$(awk -F'\t' '$1 == "bin" && $2 == "jessy-core" { print $3 }' <<<"$bins" | tail -n1)
  JESSY_API_BIN=$(awk -F'\t' '$1 == "bin" && $2 == "jessy-api" { print $3 }' <<<"$bins" | tail -n1)
  JESSY_BDD_BIN=$(awk -F'\t' '$1 == "test" && $2 == "bdd" { print $3 }' <<<"$tests" | tail -n1)
fi
for v in JESSY_CORE_BIN JESSY_API_BIN JESSY_BDD_BIN; do
  if [ -z "${!v:-}" ] || [ ! -x "${!v}" ]; then die "$v: no executable (${!v:-unset})"; fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jessy-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Copy a file to the same absolute path under the root filesystem $1,
# dereferencing symlinks (the image gets plain files).
copy_into() {
  local root=$1 src=$2
  mkdir -p "$root$(dirname "$src")"
  cp -L "$src" "$root$src"
  chmod 0755 "$root$src"
}

# The shared libraries of an executable and its loader, as absolute paths.
shared_libs() {
  local bin=$1 out
  out=$(ldd "$bin" 2>&1) || {
    # Static executables: "not a dynamic executable" -> nothing to copy.
    grep -q 'not a dynamic executable\|statically linked' <<<"$out" && return 0
    die "ldd $bin failed: $out"
  }
  if grep -q 'not found' <<<"$out"; then die "ldd $bin: missing library: $out"; fi
  awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' <<<"$out" | sort -u
}

build_image() {
  local name=$1 bin=$2
  local root="$WORK/$name"
  local binary features_dir
  binary=$(json_get "[\"images\"][\"$name\"][\"binary\"]")
  features_dir=$(json_get "[\"images\"][\"$name\"].get(\"features_dir\", \"\")")

  mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp"
  install -m 0755 "$bin" "$root/bin/$binary"
  json_raw passwd >"$root/etc/passwd"
  json_raw group >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  local lib
  while IFS= read -r lib; do
    [ -n "$lib" ] && copy_into "$root" "$lib"
  done < <(shared_libs "$bin")
  if [ -n "$features_dir" ]; then
    mkdir -p "$root$features_dir"
    local f found=0
    for f in "$ROOT"/tests/features/*.feature; do
      [ -f "$f" ] || continue
      install -m 0644 "$f" "$root$features_dir/"
      found=1
    done
    [ "$found" = 1 ] || die "no tests/features/*.feature to put in $name"
  fi
  find "$root" -type d -exec chmod 0755 {} +
  chmod 1777 "$root/tmp"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

  # The image configuration, as `docker import --change` instructions.
  local -a changes=()
  local line
  while IFS= read -r line; do
    changes+=(--change "$line")
  done < <(python3 - "$DESC" "$name" "$VERSION" "$REVISION" "$CREATED" <<'PY'
import json, sys
desc_path, name, version, revision, created = sys.argv[1:]
d = json.load(open(desc_path))
img = d["images"][name]
q = json.dumps  # a double-quoted string the Dockerfile parser understands
print(f'USER {d["user"]["uid"]}:{d["user"]["gid"]}')
print(f'ENTRYPOINT {json.dumps(["/bin/" + img["binary"]])}')
if img.get("port"):
    print(f'EXPOSE {img["port"]}')
for k, v in sorted(img.get("env", {}).items()):
    print(f"ENV {k}={q(v)}")
labels = dict(d.get("labels", {}))
labels.update({
    "org.opencontainers.image.title": name,
    "org.opencontainers.image.description": img.get("description", name),
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.created": created,
})
for k, v in sorted(labels.items()):
    print(f"LABEL {k}={q(v)}")
if img.get("healthcheck"):
    print("HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 "
          f"CMD {json.dumps(img['healthcheck'])}")
PY
)

  echo "build-images: $name:$TAG <- $bin" >&2
  local id
  id=$(tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" \
         --format=gnu -C "$root" -cf - . \
       | docker import "${changes[@]}" --message "jessy $name $VERSION ($REVISION)" - "$name:$TAG")
  echo "build-images: $name:$TAG = $id" >&2
}

build_image jessy-core "$JESSY_CORE_BIN"
build_image jessy-api "$JESSY_API_BIN"
build_image jessy-test "$JESSY_BDD_BIN"

docker image ls --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' \
  | awk 'NR == 1 || /^jessy-(core|api|test):/'
