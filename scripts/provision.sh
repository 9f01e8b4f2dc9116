#!/usr/bin/env bash
# Installs what `make run-local` or `make test-all` needs on a machine with
# only Rust and Docker, pinned, where a user's machine expects it:
#   - rustup: the musl target of the shipped build (and llvm-tools for coverage);
#   - cargo tools: `cargo install --locked` into your cargo bin ($CARGO_HOME/bin);
#   - Python tools: a virtualenv of the project's own (.venv/), never the system's;
#   - system packages (Debian/Ubuntu apt): only what must come from them. They
#     are listed before anything happens; as root they are installed, with
#     sudo you are asked for your password, otherwise the script stops at once
#     with the one command that installs them.
# Everything already present is skipped, so a second run takes seconds.
#
# Usage: scripts/provision.sh run|test [--check]
#   run      what `make run-local` needs (build the images, start the stack)
#   test     what `make test-all` needs (everything)
#   --check  install nothing; list what is missing and exit 1 if anything is
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

purpose=${1:-}
check_only=0
[ "${2:-}" = --check ] && check_only=1
case "$purpose" in
  run | test) ;;
  *) echo "usage: $0 run|test [--check]" >&2; exit 2 ;;
esac

CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"
VENV=$ROOT/.venv
say() { printf 'provision: %s\n' "$*" >&2; }

# ------------------------------------------------------------ what is needed --
# Pinned versions; each cargo tool as crate@version:binary:rough install
# time on 2 cores[:extra cargo install arguments].
cargo_tools=("cargo-auditable@0.7.7:cargo-auditable:1 min")
python_tools=()
apt=()
have() { command -v "$1" >/dev/null 2>&1; }
need_apt() { have "$1" || apt+=("$2"); }

need_apt jq jq
need_apt skopeo skopeo        # writes the docker-archives (as nix2container's skopeo does)
need_apt musl-gcc musl-tools  # the C of the allocator, compiled for musl
need_apt git git
need_apt make make
need_apt curl curl
if ! docker compose version >/dev/null 2>&1; then need_apt docker-compose docker-compose; fi
if [ "$purpose" = test ]; then
  have cargo-nextest || cargo_tools+=("cargo-nextest@0.9.143:cargo-nextest:4 min")
  cargo_tools+=(
    "cargo-llvm-cov@0.9.1:cargo-llvm-cov:3 min"
    "cargo-deny@0.20.2:cargo-deny:5 min"
    "cargo-audit@0.22.2:cargo-audit:8 min"
    "deadnix@1.3.1:deadnix:1 min"
    # serve/watch are not needed to build the book: a third of the build.
    "mdbook@0.5.4:mdbook:2 min:--no-default-features --features search"
  )
  python_tools=("check-jsonschema==0.39.0" "zizmor==1.32.0" "kubernetes-validate==1.37.0" "PyYAML==6.0.3")
  need_apt nix-instantiate nix-bin  # parses and evaluates the .nix files (no nixpkgs here)
  need_apt promtool prometheus      # Prometheus configuration and metrics checks
  need_apt podman podman            # the Kubernetes Deployments under `podman kube play`
  need_apt catatonit catatonit      # podman's pause process
  need_apt unshare util-linux       # the network namespace of the sandbox rehearsal
  need_apt ip iproute2
  python3 -c 'import ensurepip' 2>/dev/null || apt+=(python3-venv)
fi
have rustup || { say "rustup not found: install Rust from https://rustup.rs first"; exit 1; }
target="$(uname -m)-unknown-linux-musl"
rust_missing=()
rustup target list --installed | grep -qx "$target" || rust_missing+=("target $target")
if [ "$purpose" = test ]; then
  rustup component list --installed | grep -q '^llvm-tools' || rust_missing+=("component llvm-tools-preview")
fi
missing_cargo=()
installed=$(cargo install --list 2>/dev/null || true)
for t in "${cargo_tools[@]}"; do
  IFS=: read -r spec bin minutes _ <<<"$t"
  # Installed by cargo at the pinned version (cargo-auditable has no --version).
  if ! have "$bin" || ! grep -qxF "${spec%@*} v${spec#*@}:" <<<"$installed"; then
    missing_cargo+=("$t")
  fi
done
missing_py=()
frozen=$("$VENV/bin/python" -m pip freeze 2>/dev/null || true)
for p in "${python_tools[@]}"; do
  grep -qixF "$p" <<<"$frozen" || missing_py+=("$p")
done

# --------------------------------------------------------- say it up front --
if [ ${#apt[@]} -eq 0 ] && [ ${#rust_missing[@]} -eq 0 ] && [ ${#missing_cargo[@]} -eq 0 ] && [ ${#missing_py[@]} -eq 0 ]; then
  say "everything '$purpose' needs is installed"
  exit 0
fi
say "'$purpose' needs, and will install:"
[ ${#apt[@]} -eq 0 ] || say "  system packages (apt, needs root): ${apt[*]}"
[ ${#rust_missing[@]} -eq 0 ] || say "  rustup: ${rust_missing[*]}"
for t in "${missing_cargo[@]}"; do
  IFS=: read -r spec _ minutes extra <<<"$t"
  say "  cargo install --locked $spec${extra:+ $extra} into $CARGO_BIN (about $minutes)"
done
[ ${#missing_py[@]} -eq 0 ] || say "  into $VENV: ${missing_py[*]}"
if [ "$check_only" = 1 ]; then exit 1; fi

if [ ${#apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif have sudo; then
    say "asking for root (sudo) to run: apt-get install ${apt[*]}"
    sudo=(sudo)
  else
    say "these must come from the system packages; install them as root, then run this again:"
    say "  apt-get update && apt-get install -y --no-install-recommends ${apt[*]}"
    exit 1
  fi
  have apt-get || { say "no apt-get here: install ${apt[*]} with your system's package manager"; exit 1; }
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
fi
for r in "${rust_missing[@]}"; do
  # shellcheck disable=SC2086 # "target X" / "component Y" are two words on purpose
  rustup ${r%% *} add ${r#* }
done
for t in "${missing_cargo[@]}"; do
  IFS=: read -r spec _ _ extra <<<"$t"
  say "cargo install --locked $spec${extra:+ $extra}"
  # shellcheck disable=SC2086 # extra holds several arguments
  cargo install --locked --quiet "$spec" $extra
done
if [ ${#missing_py[@]} -gt 0 ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing_py[@]}"
fi
say "done"
