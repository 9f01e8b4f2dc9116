#!/usr/bin/env bash
# Static checks of deploy/k8s: render (tests/k8s/render.py; cross-checked against
# `kubectl kustomize` when kubectl exists), schema-validate with `kubernetes-validate --strict`
# (newest bundled Kubernetes and the oldest we support), project rules (tests/k8s/policy.py),
# the digest pinning used by CI (deploy/k8s/pin-images.sh), and negative self-tests that prove
# the validators reject broken input. Needs: python3 + PyYAML, kubernetes-validate (pip).
# Ends with "k8s: N passed, M failed"; exit 1 on any failure. Offline, ~20 s.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/jessy-k8s-validate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Kubernetes versions to validate against: newest schema bundled, and the oldest release we
# support (1.30: HPA v2, PDB unhealthyPodEvictionPolicy, restricted Pod Security all exist).
K8S_VERSIONS=${K8S_VERSIONS:-"1.37.0 1.30.0"}
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
run()  { # run DESCRIPTION CMD...  (output shown only on failure)
  local what=$1 log rc; shift
  if declare -F "$1" >/dev/null; then log=$("$@" 2>&1); rc=$?; else log=$(timeout 120 "$@" 2>&1); rc=$?; fi
  if [ "$rc" -eq 0 ]; then ok "$what"; else fail "$what"; printf '%s\n' "$log" | tail -n 40 | sed 's/^/     /'; fi
}

if ! command -v kubernetes-validate >/dev/null; then
  fail "kubernetes-validate is not installed (pip install kubernetes-validate)"
fi
have_kubectl=0
if command -v kubectl >/dev/null && timeout 20 kubectl kustomize --help >/dev/null 2>&1; then have_kubectl=1; fi

same_objects() { # same_objects A.yaml B.yaml: equal as sets of objects (order-insensitive)
  python3 - "$1" "$2" <<'EOF'
import sys, yaml
def load(p):
    with open(p) as f:
        return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in yaml.safe_load_all(f) if d}
a, b = load(sys.argv[1]), load(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
for k in diff:
    print("differs:", "/".join(str(x) for x in k))
sys.exit(1 if diff else 0)
EOF
}

validate_rendered() { # validate_rendered NAME FILE
  local name=$1 file=$2 v
  for v in $K8S_VERSIONS; do
    run "$name: kubernetes-validate --strict (Kubernetes $v)" kubernetes-validate --strict --quiet -k "$v" "$file"
  done
  run "$name: project rules (tests/k8s/policy.py)" python3 tests/k8s/policy.py "$file"
}

for target in base overlays/staging; do
  dir=deploy/k8s/$target out="$tmp/${target//\//-}.yaml"
  if timeout 60 python3 tests/k8s/render.py "$dir" > "$out" 2> "$tmp/err"; then
    ok "$target: rendered by tests/k8s/render.py ($(grep -c '^kind:' "$out") objects)"
  else
    fail "$target: render"; sed 's/^/     /' "$tmp/err"; continue
  fi
  if [ "$have_kubectl" = 1 ]; then
    if timeout 60 kubectl kustomize "$dir" > "$out.kubectl" 2> "$tmp/err"; then
      run "$target: render.py output == kubectl kustomize output" same_objects "$out" "$out.kubectl"
    else
      fail "$target: kubectl kustomize"; sed 's/^/     /' "$tmp/err"
    fi
  else
    echo "note kubectl not installed: render.py not cross-checked against kustomize"
  fi
  validate_rendered "$target" "$out"
done

# The digest pinning CI performs before `kubectl apply -k` (written to a scratch directory).
core_ref="ghcr.io/example-owner/jessy-core@sha256:$(printf '1%.0s' {1..64})"
api_ref="ghcr.io/example-owner/jessy-api@sha256:$(printf '2%.0s' {1..64})"
if pinned=$(bash deploy/k8s/pin-images.sh staging "$core_ref" "$api_ref" "$tmp/pinned" 2> "$tmp/err") \
   && python3 tests/k8s/render.py "$pinned" > "$tmp/pinned.yaml" 2> "$tmp/err"; then
  images=$(grep -E '^\s+image:' "$tmp/pinned.yaml" | awk '{print $2}' | sort | tr '\n' ' ')
  if [ "$images" = "$core_ref $api_ref " ] || [ "$images" = "$api_ref $core_ref " ]; then
    ok "pin-images.sh: staging pinned to both digests"
  else
    fail "pin-images.sh: unexpected images: $images"
  fi
  if [ "$have_kubectl" = 1 ]; then
    kubectl kustomize "$pinned" > "$tmp/pinned.kubectl" 2>&1
    run "pin-images.sh: render.py output == kubectl kustomize output" same_objects "$tmp/pinned.yaml" "$tmp/pinned.kubectl"
  fi
  validate_rendered "staging-pinned" "$tmp/pinned.yaml"
else
  fail "pin-images.sh / render of the pinned overlay"; sed 's/^/     /' "$tmp/err"
fi
if bash deploy/k8s/pin-images.sh staging 'ghcr.io/x/y:ok'$'\n''- injected' "$api_ref" "$tmp/bad" >/dev/null 2>&1; then
  fail "pin-images.sh accepted a reference with a newline"
else
  ok "pin-images.sh refuses a malformed reference"
fi

# Negative self-tests: the checks above must reject broken manifests.
python3 - "$tmp/overlays-staging.yaml" "$tmp" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def dump(name, mutate):
    ds = yaml.safe_load(yaml.safe_dump(docs))  # deep copy
    for d in ds:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "jessy-core":
            mutate(d)
    yaml.safe_dump_all(ds, open(f"{sys.argv[2]}/{name}.yaml", "w"))
dump("bad-field", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}))
dump("bad-grace", lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=10))
dump("bad-root", lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False))
EOF
# Only a validator that ran can pass its self-test (a missing one failed above).
if ! command -v kubernetes-validate >/dev/null; then
  echo "skip self-test: kubernetes-validate is not installed"
elif kubernetes-validate --strict --quiet "$tmp/bad-field.yaml" >/dev/null 2>&1; then
  fail "self-test: kubernetes-validate --strict accepted an unknown field (livenesProbe)"
else
  ok "self-test: kubernetes-validate --strict rejects an unknown field"
fi
for bad in bad-grace bad-root; do
  if python3 tests/k8s/policy.py "$tmp/$bad.yaml" >/dev/null 2>&1; then
    fail "self-test: policy.py accepted $bad"
  else
    ok "self-test: policy.py rejects $bad"
  fi
done

echo "k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
