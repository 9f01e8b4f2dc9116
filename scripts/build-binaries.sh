#!/usr/bin/env bash
# The shipped binaries, built without Nix exactly as the flake builds them
# (nix/packages.nix): the target, features, cargo flags and rustflags of
# deploy/build.json, static musl on Linux, with cargo-auditable embedding the
# crate list. Writes:
#   OUT/jessy-core/bin/jessy-core, OUT/jessy-api/bin/jessy-api   (always)
#   OUT/jessy-test/bin/jessy-bdd + share/jessy/features          (--with-bdd)
# each tree being what the image's own layer holds.
#
# Usage: scripts/build-binaries.sh [--out DIR] [--with-bdd] [--offline]
#   --out DIR    default target/ship
#   --offline    pass --offline to cargo (the sandbox rehearsal does)
# Environment: CARGO_TARGET_DIR as usual; JESSY_GIT_REVISION (default: HEAD
# when the tracked tree is clean, else "dirty" -- as the flake's self.rev).
# Needs: cargo with the musl target (rustup target add), cargo-auditable,
# musl-gcc (Debian: musl-tools) for the C in the allocator, jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
die() { echo "build-binaries: $*" >&2; exit 1; }

out=$ROOT/target/ship with_bdd=0 offline=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --with-bdd) with_bdd=1; shift ;;
    --offline) offline=(--offline); shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

desc=deploy/build.json
[ "$(uname -s)" = Linux ] || die "the shipped build is Linux (static musl); on this system use Nix with a Linux builder"
cpu=$(uname -m)
target=$(jq -r --arg cpu "$cpu" '.linux.target | sub("\\{cpu\\}"; $cpu)' "$desc")
mapfile -t cargo_args < <(jq -r '.cargoArgs[]' "$desc")
cargo_args+=(--features "$(jq -r '.features | join(",")' "$desc")" --target "$target" "${offline[@]}")
export CARGO_BUILD_RUSTFLAGS
CARGO_BUILD_RUSTFLAGS=$(jq -r '.linux.rustflags' "$desc")
# The C of libmimalloc-sys must be compiled for musl too (nix/packages.nix
# sets the same variable to Nix's musl cross compiler).
cc_var="CC_${target//-/_}"
if [ -z "${!cc_var:-}" ]; then
  command -v musl-gcc >/dev/null || die "musl-gcc not found: apt-get install musl-tools (scripts/provision.sh does)"
  export "$cc_var=musl-gcc"
fi
build=(build)
if [ "$(jq -r '.linux.auditable' "$desc")" = true ]; then
  cargo auditable --version >/dev/null 2>&1 || die "cargo-auditable not found: cargo install --locked cargo-auditable (scripts/provision.sh does)"
  build=(auditable build)
fi
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  rustc --print target-libdir --target "$target" >/dev/null 2>&1 ||
  die "the $target target is not installed: rustup target add $target"

JESSY_GIT_REVISION=$(bash scripts/revision.sh)
export JESSY_GIT_REVISION

messages=$(mktemp "${TMPDIR:-/tmp}/build-binaries.XXXXXX")
trap 'rm -f "$messages"' EXIT
echo "build-binaries: cargo ${build[*]} --release ${cargo_args[*]} --bins (RUSTFLAGS $CARGO_BUILD_RUSTFLAGS)" >&2
cargo "${build[@]}" --release "${cargo_args[@]}" --bins \
  --message-format json-render-diagnostics >"$messages"
bash scripts/image/install-bins.sh "$messages" "$out"

if [ "$with_bdd" = 1 ]; then
  echo "build-binaries: cargo test --release ${cargo_args[*]} --no-run --test bdd" >&2
  cargo test --release "${cargo_args[@]}" --no-run --test bdd \
    --message-format json-render-diagnostics >"$messages"
  rm -rf "${out:?}/jessy-test"
  bash scripts/image/install-bdd.sh "$messages" tests/features "$out/jessy-test"
fi
echo "build-binaries: $target binaries of revision $JESSY_GIT_REVISION in $out" >&2
