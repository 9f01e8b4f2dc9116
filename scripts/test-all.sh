#!/usr/bin/env bash
# The whole test suite for a machine without Nix (`make test-all`, which runs
# `scripts/provision.sh test` first):
#   1. the flake's cargo checks, rehearsed as the Nix sandbox runs them
#      (scripts/sandbox-checks.sh): fmt, clippy, the shipped static musl
#      build, the tests on it (unit, integration, BDD), rustdoc, the tests
#      under the coverage gate, cargo-audit (also on the shipped binaries'
#      embedded crate list) and cargo-deny;
#   2. the image scripts' own tests, the Nix files, the manual, the CI,
#      compose, Prometheus and Kubernetes files;
#   3. the images built from the binaries of step 1 exactly as `make images`
#      builds them (twice: the same ids), the compose stack end to end in
#      real containers, the Kubernetes Deployments under podman kube play.
#
# Every step runs even when an earlier one failed (except those that need
# its output). A step that cannot run here says "skipped" and why, and is
# not counted as passed. The last line counts them; exit status 0 only if
# nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export PATH="$ROOT/.venv/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
passed=0 failed=0 skipped=0
failures=() skips=()

# step NAME CMD...: exit 0 = ok, 3 = skipped (the command says why), else failed.
step() {
  local name=$1 started=$SECONDS rc
  shift
  echo
  echo "==> ${name}"
  "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "<== ${name}: ok ($((SECONDS - started)) s)"
  elif [ "$rc" -eq 3 ]; then
    skipped=$((skipped + 1))
    skips+=("${name}")
    echo "<== ${name}: skipped ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    failures+=("${name}")
    echo "<== ${name}: FAILED ($((SECONDS - started)) s)"
  fi
  return "$rc"
}
not_run() { # not_run NAME WHY: a step whose input is missing fails, visibly.
  failed=$((failed + 1))
  failures+=("$1 (not run: $2)")
  echo "<== $1: FAILED (not run: $2)"
}

sandbox() { bash scripts/sandbox-checks.sh "$@"; }

lint_ci_files() {
  check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml &&
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml &&
    zizmor --offline .github/workflows/ &&
    promtool check config deploy/prometheus/prometheus.yml
}

no_dockerfile() {
  local found
  found=$(git ls-files --cached --others --exclude-standard | grep -Ei '(^|/)(Dockerfile|Containerfile)[^/]*$' || true)
  [ -z "$found" ] || { echo "Dockerfiles are not allowed here: $found"; return 1; }
}

book() {
  mdbook build docs && python3 tests/docs/check-links.py
}

# The images from the binaries the sandbox built and tested, twice: a
# rebuild of one commit must give the same ids and leave nothing dangling.
images_twice() {
  local first second dangling_before dangling_after
  ids() { docker image inspect --format '{{.Id}}' jessy-core:latest jessy-api:latest jessy-test:latest; }
  bash scripts/build-images.sh --test --no-cargo || return 1
  first=$(ids) || return 1
  dangling_before=$(docker images -q -f dangling=true | sort)
  bash scripts/build-images.sh --test --no-cargo >/dev/null || return 1
  second=$(ids) || return 1
  dangling_after=$(docker images -q -f dangling=true | sort)
  [ "$first" = "$second" ] || { printf 'a rebuild changed the image ids:\n%s\n%s\n' "$first" "$second"; return 1; }
  [ "$dangling_before" = "$dangling_after" ] || { echo "a rebuild left dangling images: $dangling_after"; return 1; }
  echo "the same image ids twice:"
  echo "$first"
}

step "rustfmt (sandbox)" sandbox fmt
step "clippy, musl target, --deny warnings (sandbox)" sandbox clippy
if step "the shipped build: static musl, cargo-auditable, + BDD suite (sandbox)" sandbox build; then
  step "cargo-audit: Cargo.lock and the shipped binaries' embedded crate list (sandbox)" sandbox audit
else
  not_run "cargo-audit of the shipped binaries" "no shipped build"
fi
step "tests on the musl target: unit + integration + BDD (sandbox nextest)" sandbox nextest
step "rustdoc --deny warnings (sandbox)" sandbox doc
step "tests under the coverage gate, >= 80 % lines (sandbox llvm-cov)" sandbox coverage
step "cargo-deny: bans, licenses, sources (sandbox)" sandbox deny
step "cargo-deny: advisories too (deny.toml)" bash tests/nix/deny.sh
step "image scripts: check-archive and oci-layout against good and broken images" \
  python3 tests/image/test_image_scripts.py
step "Nix: parse, deadnix, flake.lock pins, evaluation" bash tests/nix/check.sh
step "no Dockerfile in the repository" no_dockerfile
step "the manual: mdbook build, relative links" book
step "CI, compose and Prometheus files" lint_ci_files
step "Kubernetes manifests (kubernetes-validate --strict)" bash tests/k8s/validate.sh
if [ -x target/ship/jessy-core/bin/jessy-core ] && [ -x target/ship/jessy-test/bin/jessy-bdd ] &&
  step "images from the shipped binaries, built twice: same ids, nothing dangling" images_twice; then
  step "end-to-end: the compose stack in real containers" bash tests/e2e/run.sh
  step "Kubernetes Deployments under podman kube play" bash tests/k8s/kube-play.sh
else
  not_run "end-to-end" "no images"
  not_run "kube play" "no images"
fi

echo
if [ "${skipped}" -gt 0 ]; then
  printf 'skipped steps (not counted as passed):\n'
  printf '  - %s\n' "${skips[@]}"
fi
if [ "${failed}" -gt 0 ]; then
  printf 'failed steps:\n'
  printf '  - %s\n' "${failures[@]}"
fi
echo "test-all: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "${failed}" -eq 0 ]
