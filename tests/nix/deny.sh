#!/usr/bin/env bash
# cargo-deny, all four checks (advisories, bans, licenses, sources).
#
# The advisory database is fetched as cargo-deny normally does it, unless
# JESSY_ADVISORY_DB names a local copy (a directory or a .tar.gz of
# rustsec/advisory-db; .ci/run points it at the snapshot of the revision
# flake.lock pins). cargo-deny looks for a git checkout at
# <db-path>/advisory-db-3157b0e258782691 (the directory name comes from the
# database URL): the script turns the copy into such a checkout in a
# temporary directory and runs cargo-deny offline with a copy of deny.toml
# whose db-path points there; deny.toml itself keeps the default location.
#
# Usage: tests/nix/deny.sh
# Needs: cargo-deny (scripts/provision.sh test installs it), git, tar, and
# the crates of Cargo.lock in the cargo cache (fetched when missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

DB=${JESSY_ADVISORY_DB:-}
# rev and commit time of the advisory-db pin (flake.lock), for a local copy
DB_REV=bf5c0d245a92671908518d7e765914d437954ed6
DB_TIME=1787293720
DB_DIR_NAME=advisory-db-3157b0e258782691

die() { echo "deny.sh: $*" >&2; exit 2; }
command -v cargo-deny >/dev/null || die "cargo-deny not found: cargo install --locked cargo-deny"
command -v git >/dev/null || die "git not found: apt-get install git"
if [ -z "$DB" ]; then
  echo "deny.sh: JESSY_ADVISORY_DB unset: cargo-deny fetches the advisory database" >&2
  exec cargo deny --log-level "${DENY_LOG_LEVEL:-warn}" --locked --all-features check
fi
[ -e "$DB" ] || die "JESSY_ADVISORY_DB: nothing at $DB"
grep -q "\"rev\": \"$DB_REV\"" flake.lock || die "flake.lock no longer pins advisory-db $DB_REV: update DB_REV/DB_TIME and the snapshot"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jessy-deny.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The snapshot is a plain tree: commit it, dated like the pinned commit.
mkdir -p "$WORK/dbs" "$WORK/unpack"
if [ -d "$DB" ]; then
  cp -r "$DB" "$WORK/dbs/$DB_DIR_NAME"
else
  tar -xzf "$DB" -C "$WORK/unpack"
  mv "$WORK/unpack"/* "$WORK/dbs/$DB_DIR_NAME"
fi
rm -rf "$WORK/dbs/$DB_DIR_NAME/.git"
(
  cd "$WORK/dbs/$DB_DIR_NAME"
  export GIT_AUTHOR_NAME=snapshot GIT_AUTHOR_EMAIL=snapshot@localhost
  export GIT_COMMITTER_NAME=snapshot GIT_COMMITTER_EMAIL=snapshot@localhost
  export GIT_AUTHOR_DATE="@$DB_TIME +0000" GIT_COMMITTER_DATE="@$DB_TIME +0000"
  git init -q
  git add -A
  git commit -q -m "rustsec/advisory-db $DB_REV"
)

# deny.toml with only db-path changed.
grep -q '^db-path = ' deny.toml || die "deny.toml has no db-path line"
sed "s|^db-path = .*|db-path = \"$WORK/dbs\"|" deny.toml >"$WORK/deny.toml"

# cargo metadata (inside cargo-deny) needs every crate of Cargo.lock, also
# those of platforms the build machine never compiled for.
if ! cargo metadata --format-version 1 --offline --locked >/dev/null 2>&1; then
  echo "deny.sh: fetching the crates of Cargo.lock (crates.io)" >&2
  cargo fetch --locked
fi

cargo deny --log-level "${DENY_LOG_LEVEL:-warn}" --offline --locked --all-features --config "$WORK/deny.toml" check
