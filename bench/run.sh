#!/usr/bin/env bash
# jessy benchmark: bench/run.sh [--quick] [--build-times] [--help for all options]
#
# Builds the shipped binaries (static musl, scripts/build-binaries.sh) -- the
# product and the budget's -- the glibc release build beside them (@glibc) and
# the bare-axum reference (glibc, and static musl), runs the load cases
# (wrk, loopback only, interleaved rounds), startup/RSS/size measurements and
# the divan microbenchmarks, then prints the results table and the budget
# (PASS/MISS). Writes JSON lines + Markdown to bench/results/.
# Exit 1 only on errors (non-2xx, a server that does not start, a failed build).
#
# Needs: cargo, python3, wrk, nginx (Debian: apt-get install -y wrk nginx hyperfine);
# oha (cargo install oha --locked) adds the fixed-rate latency cases.
# Default run: about 15 minutes on a 2-core box (+5-10 min with --build-times);
# --quick: about 1 minute.
#
# bench/run.sh --soak [soak options]: instead, the soak of the shipped build
# (bench/soak.py: a fixed rate through the gateway while the core restarts
# twice; about 3 minutes; `bench/soak.py --help` for its options).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "${1:-}" = --soak ]; then
  shift
  "$here/../scripts/build-binaries.sh"
  ship=$here/../target/ship
  exec python3 "$here/soak.py" --core-bin "$ship/jessy-core/bin/jessy-core" \
    --api-bin "$ship/jessy-api/bin/jessy-api" "$@"
fi
exec python3 "$here/bench.py" "$@"
