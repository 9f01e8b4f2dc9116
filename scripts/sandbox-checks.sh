#!/usr/bin/env bash
# The flake's cargo checks, rehearsed the way the Nix build sandbox runs them,
# so that a check which needs what the sandbox lacks fails here first:
#   - the source as the flake's fileset filters it (deploy/build.json, read by
#     scripts/source-files.py; only files git tracks, as a flake sees them);
#   - the crates of Cargo.lock vendored (as crane's vendorCargoDeps), cargo
#     pointed at them, no registry;
#   - a network namespace with loopback only (unshare --net);
#   - an empty environment: HOME=/homeless-shelter, PATH = the toolchain and
#     the check's tools, the variables nix/packages.nix sets (musl target,
#     rustflags, the musl C compiler) and nothing else;
#   - each check's command line exactly as crane runs it at the pinned rev
#     (read off crane's lib/*.nix; the same list is in docs/src/nix.md).
# What it cannot reproduce: the Nix store's toolchain (this uses rustup's
# 1.95.0 from rust-toolchain.toml, the same release) and /usr/bin stays on
# PATH (the sandbox has only stdenv's tools).
#
# Usage: scripts/sandbox-checks.sh CHECK
#   build     cargo auditable build (the shipped binaries, copied to target/ship)
#             and the BDD suite (target/ship/jessy-test), as nix/packages.nix
#   nextest   cargo nextest run on the musl target, release profile
#   clippy    cargo clippy --all-targets -- --deny warnings (musl target)
#   doc       cargo doc --no-deps with RUSTDOCFLAGS=--deny warnings (musl target)
#   fmt       cargo fmt -- --check
#   coverage  cargo llvm-cov nextest, native target, dev profile, >= 80 % lines
#   audit     cargo audit against the advisory database, then
#             scripts/audit-binaries.sh: `cargo audit bin` on the shipped
#             binaries' embedded crate list (needs `build`)
#   deny      cargo deny check bans licenses sources (offline)
# Environment:
#   JESSY_ADVISORY_DB  the advisory database for `audit`: a directory or a
#                      .tar.gz of rustsec/advisory-db. Unset: cloned from
#                      GitHub, as cargo-audit itself fetches it.
# Needs: cargo-nextest, cargo-llvm-cov, cargo-audit, cargo-deny,
# cargo-auditable, musl-gcc, jq, unshare and ip (root, or unprivileged user
# namespaces). scripts/provision.sh test installs them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
die() { echo "sandbox: $*" >&2; exit 1; }

check=${1:-}
case "$check" in
  build | nextest | clippy | doc | fmt | coverage | audit | deny) ;;
  *) sed -n '/^# Usage:/,/^set -euo/{/^set -euo/!p}' "$0" >&2; exit 2 ;;
esac

desc=deploy/build.json
features=$(jq -r '.features | join(",")' "$desc")
cargo_args="$(jq -r '.cargoArgs | join(" ")' "$desc") --features $features"
target=$(jq -r --arg cpu "$(uname -m)" '.linux.target | sub("\\{cpu\\}"; $cpu)' "$desc")

box=$ROOT/target/sandbox
src=$box/source
mkdir -p "$box"

# ----------------------------------------------------- outside the sandbox --
# The source, through the flake's filter. Copies keep their mtimes, so the
# persistent target dir only rebuilds what changed.
rm -rf "$src"
python3 scripts/source-files.py --copy-to "$src"

# Vendored crates (crane's vendorCargoDeps fetches them before the build).
# Re-vendored only when Cargo.lock changes.
lock_hash=$(sha256sum Cargo.lock | cut -c1-16)
if [ "$(cat "$box/vendor.stamp" 2>/dev/null)" != "$lock_hash" ]; then
  echo "sandbox: cargo vendor (Cargo.lock changed)" >&2
  rm -rf "$box/vendor"
  (cd "$src" && cargo vendor --locked --versioned-dirs --quiet "$box/vendor" >/dev/null)
  echo "$lock_hash" >"$box/vendor.stamp"
fi
mkdir -p "$box/cargo-home"
cat >"$box/cargo-home/config.toml" <<EOF
[source.crates-io]
replace-with = "vendored-sources"
[source.vendored-sources]
directory = "$box/vendor"
EOF

# The tools the check may call, and nothing of the user's cargo bin else.
sysroot=$(rustc --print sysroot)
tools=$box/tools
rm -rf "$tools"
mkdir -p "$tools"
case "$check" in
  build) needed=(cargo-auditable musl-gcc) ;;
  nextest) needed=(cargo-nextest musl-gcc) ;;
  clippy | doc) needed=(musl-gcc) ;;
  coverage) needed=(cargo-llvm-cov cargo-nextest) ;;
  audit) needed=(cargo-audit) ;;
  deny) needed=(cargo-deny) ;;
  fmt) needed=() ;;
esac
for tool in "${needed[@]}"; do
  path=$(command -v "$tool") || die "$tool not found: scripts/provision.sh test installs it"
  ln -s "$path" "$tools/$tool"
done

# The advisory database, a plain directory as the flake's advisory-db input.
advisory_db=$box/advisory-db
if [ "$check" = audit ]; then
  rm -rf "$advisory_db"
  if [ -n "${JESSY_ADVISORY_DB:-}" ]; then
    if [ -d "$JESSY_ADVISORY_DB" ]; then
      cp -r "$JESSY_ADVISORY_DB" "$advisory_db"
    else
      mkdir -p "$box/db-unpack" && tar -xzf "$JESSY_ADVISORY_DB" -C "$box/db-unpack"
      mv "$box/db-unpack"/* "$advisory_db" && rmdir "$box/db-unpack"
    fi
  else
    git clone --quiet --depth 1 https://github.com/rustsec/advisory-db "$advisory_db" ||
      die "cannot fetch the advisory database; set JESSY_ADVISORY_DB to a local copy"
  fi
  [ -d "$advisory_db/crates" ] || die "$advisory_db holds no crates/ directory: not an advisory database"
fi

# ------------------------------------------------------ inside the sandbox --
musl_env=(
  "CARGO_BUILD_TARGET=$target"
  "CARGO_BUILD_RUSTFLAGS=$(jq -r .linux.rustflags "$desc")"
  "CC_${target//-/_}=musl-gcc"
)
case "$check" in
  build)
    env=("${musl_env[@]}" "JESSY_GIT_REVISION=$(bash scripts/revision.sh)")
    # The binaries are copied out before the BDD build: building an
    # integration test rebuilds them, without cargo-auditable, in place.
    cmd="cargo auditable build --release --message-format json-render-diagnostics $cargo_args >\$OUT/build.json
         bash $ROOT/scripts/image/install-bins.sh \$OUT/build.json \$OUT/ship
         cargo test --release $cargo_args --no-run --test bdd --message-format json-render-diagnostics >\$OUT/bdd.json" ;;
  nextest)
    env=("${musl_env[@]}" NEXTEST_SHOW_PROGRESS=counter)
    cmd="cargo nextest run --cargo-profile release $cargo_args" ;;
  clippy)
    env=("${musl_env[@]}")
    cmd="cargo clippy --release $cargo_args --all-targets -- --deny warnings" ;;
  doc)
    env=("${musl_env[@]}" "RUSTDOCFLAGS=--deny warnings")
    cmd="cargo doc --release $cargo_args --no-deps" ;;
  fmt)
    env=()
    cmd="cargo fmt -- --check" ;;
  coverage)
    env=(NEXTEST_SHOW_PROGRESS=counter)
    cmd="cargo llvm-cov nextest --lcov --output-path \$OUT/lcov.info --fail-under-lines 80 $cargo_args" ;;
  audit)
    env=()
    shipped=()
    for b in jessy-core jessy-api; do
      [ -x "target/ship/$b/bin/$b" ] || die "target/ship/$b/bin/$b missing: run '$0 build' first"
      shipped+=("$ROOT/target/ship/$b/bin/$b")
    done
    # crane's default --ignore yanked names no advisory: the yanked check
    # still runs, cannot reach the index, and prints an error per crate.
    cmd="cargo audit -n -d $advisory_db --no-yanked
         bash $ROOT/scripts/audit-binaries.sh $advisory_db ${shipped[*]}" ;;
  deny)
    env=()
    cmd="cargo --offline deny check bans licenses sources" ;;
esac

out=$box/out
rm -rf "$out" && mkdir -p "$out" "$box/tmp"
sandbox_env=(
  HOME=/homeless-shelter
  "PATH=$tools:$sysroot/bin:/usr/bin:/bin"
  "CARGO_HOME=$box/cargo-home"
  "CARGO_TARGET_DIR=$box/target"
  "TMPDIR=$box/tmp"
  TERM=dumb
  "OUT=$out"
  "${env[@]}"
)
# shellcheck disable=SC2016 # expanded inside the namespace
inner='ip link set lo up && cd "$1" && shift && exec env -i "$@" bash -euo pipefail -c "$CMD"'
unshare_args=(--net)
[ "$(id -u)" = 0 ] || unshare_args+=(--map-root-user)
unshare "${unshare_args[@]}" true 2>/dev/null ||
  die "cannot make a network namespace (unshare ${unshare_args[*]}): run as root, or enable unprivileged user namespaces"

echo "sandbox: $check: $(tr -s ' \n' ' ' <<<"$cmd")" >&2
CMD=$cmd unshare "${unshare_args[@]}" bash -c "$inner" sandbox "$src" "${sandbox_env[@]}" "CMD=$cmd"

# ------------------------------------------------------ after the sandbox --
if [ "$check" = build ]; then
  for b in jessy-core jessy-api; do
    rm -rf "target/ship/$b" && mkdir -p target/ship && cp -a "$out/ship/$b" target/ship/
  done
  rm -rf target/ship/jessy-test
  bash scripts/image/install-bdd.sh "$out/bdd.json" tests/features target/ship/jessy-test
  echo "sandbox: the shipped binaries are in target/ship" >&2
fi
if [ "$check" = coverage ]; then
  cp "$out/lcov.info" target/lcov.info && echo "sandbox: coverage report: target/lcov.info" >&2
  awk -F: '/^LF:/ { found += $2 } /^LH:/ { hit += $2 }
    END { if (found) printf "sandbox: line coverage %.1f %% (%d of %d lines; the gate is 80 %%)\n", 100 * hit / found, hit, found }' \
    target/lcov.info >&2
fi
echo "sandbox: $check ok" >&2
