#!/usr/bin/env bash
# The crate list cargo-auditable embedded in the shipped binaries, read back
# and audited offline against an advisory database: proof that a scanner
# (cargo audit bin, Trivy, syft) sees the binaries' dependencies. The
# flake's jessy-auditable check and the sandbox rehearsal's audit both run it.
#
# Usage: audit-binaries.sh ADVISORY-DB BINARY...
# Needs: cargo-audit, jq.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 ADVISORY-DB BINARY..." >&2; exit 2; }
db=$1
shift
for exe in "$@"; do
  # Yanked crates cannot be checked offline (that needs the registry index).
  rc=0
  report=$(cargo-audit audit --no-fetch --db "$db" --no-yanked --json bin "$exe") || rc=$?
  crates=$(jq -r '.lockfile["dependency-count"] // 0' <<<"$report" 2>/dev/null || echo 0)
  found=$(jq -r '.vulnerabilities.count // 0' <<<"$report" 2>/dev/null || echo "?")
  echo "$(basename "$exe"): $crates crates embedded, $found known vulnerabilities"
  if [ "$crates" -lt 10 ]; then
    echo "audit-binaries: $exe carries no usable crate list (built without cargo-auditable?)" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    jq -r '.vulnerabilities.list[]? | "  \(.advisory.id) \(.package.name) \(.package.version): \(.advisory.title)"' <<<"$report" >&2 || true
    echo "audit-binaries: cargo audit bin failed on $exe (exit $rc)" >&2
    exit 1
  fi
done
