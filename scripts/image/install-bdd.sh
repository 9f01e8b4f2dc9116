#!/usr/bin/env bash
# Install the compiled BDD suite as the jessy-test image holds it: the test
# executable that cargo reported in its JSON messages, as bin/jessy-bdd, and
# the feature files under share/jessy/features (the image's
# JESSY_FEATURES_DIR). The flake's jessy-bdd package and
# scripts/build-binaries.sh both call it.
#
# Usage: install-bdd.sh CARGO-MESSAGES.json FEATURES-DIR OUT-PREFIX
# Needs: jq, coreutils.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 CARGO-MESSAGES.json FEATURES-DIR OUT-PREFIX" >&2; exit 2; }
messages=$1 features=$2 out=$3

mapfile -t found < <(jq -r 'select(.reason == "compiler-artifact"
  and .target.name == "bdd" and .target.kind == ["test"]) | .executable // empty' "$messages")
if [ "${#found[@]}" -ne 1 ] || [ ! -x "${found[0]}" ]; then
  echo "install-bdd: expected one bdd test executable in $messages, found: ${found[*]:-none}" >&2
  exit 1
fi
shopt -s nullglob
feature_files=("$features"/*.feature)
[ "${#feature_files[@]}" -gt 0 ] || { echo "install-bdd: no .feature file in $features" >&2; exit 1; }

install -Dm755 "${found[0]}" "$out/bin/jessy-bdd"
install -d "$out/share/jessy/features"
install -m644 "${feature_files[@]}" "$out/share/jessy/features/"
