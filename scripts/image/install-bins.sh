#!/usr/bin/env bash
# Install jessy-core and jessy-api from a cargo build's JSON messages as the
# images' application trees: OUT/<binary>/bin/<binary> (what nix/packages.nix's
# onlyBin gives the flake's images). scripts/build-binaries.sh and the
# sandbox's build check both call it.
#
# Usage: install-bins.sh CARGO-MESSAGES.json OUT
# Needs: jq, coreutils.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 CARGO-MESSAGES.json OUT" >&2; exit 2; }
messages=$1 out=$2
for bin in jessy-core jessy-api; do
  exe=$(jq -r --arg b "$bin" 'select(.reason == "compiler-artifact" and .target.name == $b
    and .target.kind == ["bin"]) | .executable // empty' "$messages" | tail -n1)
  [ -x "$exe" ] || { echo "install-bins: cargo reported no executable for $bin in $messages" >&2; exit 1; }
  rm -rf "${out:?}/$bin"
  install -Dm755 "$exe" "$out/$bin/bin/$bin"
done
