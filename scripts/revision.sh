#!/usr/bin/env bash
# The revision the binaries report and the images are stamped with, as the
# flake's self.rev: HEAD when the tracked tree is clean, else "dirty".
# JESSY_GIT_REVISION, when set, wins.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${JESSY_GIT_REVISION:-}" ]; then
  echo "$JESSY_GIT_REVISION"
elif rev=$(git rev-parse --verify -q HEAD 2>/dev/null) && git diff --quiet HEAD -- 2>/dev/null; then
  echo "$rev"
else
  echo dirty
fi
