#!/usr/bin/env bash
# The whole test suite, for a machine without Nix (`make test-all`):
# formatting, lints, unit + integration + BDD tests under a coverage gate,
# docs, licences and advisories, the Nix files, the CI and Kubernetes files,
# and the end-to-end run of the compose stack in real containers.
#
# Every step runs even when an earlier one failed (except those that need
# its output); the last line counts them. Exit status: 0 only if all passed.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export NEXTEST_PROFILE="${NEXTEST_PROFILE:-ci}"
passed=0
failed=0
failures=()

step() {
  local name=$1
  shift
  local started=$SECONDS
  echo
  echo "==> ${name}"
  if "$@"; then
    passed=$((passed + 1))
    echo "<== ${name}: ok ($((SECONDS - started)) s)"
    return 0
  else
    failed=$((failed + 1))
    failures+=("${name}")
    echo "<== ${name}: FAILED ($((SECONDS - started)) s)"
    return 1
  fi
}

coverage() {
  # Unit, integration and BDD tests, instrumented; fails under 80 % of lines.
  cargo llvm-cov nextest --locked --all-features --fail-under-lines 80 &&
    cargo llvm-cov report --lcov --output-path target/lcov.info >/dev/null &&
    echo "coverage report: target/lcov.info"
}

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

step "rustfmt" cargo fmt --all -- --check
step "clippy (all targets, all features, -D warnings)" \
  cargo clippy --locked --all-targets --all-features -- -D warnings
step "tests: unit + integration + BDD, coverage >= 80% lines" coverage
step "rustdoc (-D warnings)" env RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --all-features
step "cargo-deny offline (advisories, bans, licenses, sources)" bash tests/nix/deny.sh
step "Nix: parse, deadnix, flake.lock pins, evaluation" bash tests/nix/check.sh
step "no Dockerfile in the repository" no_dockerfile
step "CI, compose and Prometheus files" lint_ci_files
step "Kubernetes manifests (kubernetes-validate --strict)" bash tests/k8s/validate.sh
if step "images from the release binaries (no Dockerfile)" bash tests/e2e/build-images.sh; then
  step "end-to-end: the compose stack in real containers" bash tests/e2e/run.sh
  step "Kubernetes Deployments under podman kube play" bash tests/k8s/kube-play.sh
else
  failed=$((failed + 2))
  failures+=("end-to-end (no images)" "kube play (no images)")
fi

echo
if [ "${failed}" -gt 0 ]; then
  printf 'failed steps:\n'
  printf '  - %s\n' "${failures[@]}"
fi
echo "test-all: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
