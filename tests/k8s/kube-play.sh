#!/usr/bin/env bash
# Runs the two Deployments of deploy/k8s (rendered base) under `podman kube play` with the
# locally built images and checks they come up and talk to each other:
#   core pod   -> its probes' paths (/health, /ready, read from the manifests) answer 200
#   gateway pod-> /api/health 200, /api/ready 200 (it reached the core over the pod network),
#                 /api/v1/health and POST /api/v1/query proxied to the core
#   both       -> run as 1000:1000 with a read-only root, no capabilities, a writable /tmp
#   shutdown   -> SIGTERM flips readiness to 503 at once, the process exits 0 within
#                 terminationGracePeriodSeconds and logs "shutdown complete"
#
# How the pods are wired (there is no cluster DNS or Service in podman): each Deployment becomes
# its own pod on podman's kube network; the core pod is played first, its pod IP is read from
# podman, and the gateway's ConfigMap gets RUST_SERVICE_URL=http://<core pod IP>:8080 (the only
# configuration change; in the cluster it is the Service name http://jessy-core:8080). The
# `http` ports are also published on 127.0.0.1 (random free ports) for the polls from the host.
# Nothing listens on a non-loopback host address. podman would run the httpGet probes as `curl`
# inside the (shell-less) containers, so tests/k8s/localize.py drops them and this script polls
# the same paths from the host; podman ignores readiness anyway.
#
# Needs: podman (+ catatonit for the pod's infra container), python3 + PyYAML, curl, and the
# images jessy-core:latest / jessy-api:latest in podman or in Docker (copied with
# `docker save | podman load`). Override with CORE_IMAGE / API_IMAGE.
# Every step is bounded (KUBE_PLAY_TIMEOUT seconds per wait, default 90); the pods, their
# volumes and the temporary files are removed on every exit path.
# Ends with "k8s: N passed, M failed"; exit 1 on any failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
CORE_IMAGE=${CORE_IMAGE:-jessy-core:latest}
API_IMAGE=${API_IMAGE:-jessy-api:latest}
WAIT=${KUBE_PLAY_TIMEOUT:-90}
# podman settings of the project's own (no default ulimits, cgroupfs): see the file.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/tests/k8s/containers.conf}
VOL_PREFIX=jessy-kube-play
copied=()

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() { echo "k8s: $passed passed, $failed failed"; [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; exit $?; }
pm() { timeout 120 podman "$@"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jessy-kube-play.XXXXXX")
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local f
  for f in "$tmp/api.yaml" "$tmp/core.yaml"; do
    [ -f "$f" ] && timeout 90 podman kube down "$f" >/dev/null 2>&1
  done
  for f in $(timeout 30 podman volume ls --quiet --filter "name=$VOL_PREFIX" 2>/dev/null); do
    timeout 30 podman volume rm --force "$f" >/dev/null 2>&1
  done
  for f in "${copied[@]}"; do
    timeout 60 podman rmi --force "$f" >/dev/null 2>&1
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

for tool in podman python3 curl; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed"; finish; }
done
python3 -c 'import yaml' 2>/dev/null || { fail "python3 PyYAML is not installed"; finish; }

# The images: copied from the Docker daemon when it has them (so a rebuilt image is never
# shadowed by an older podman copy; copies made here are removed again), else podman's own.
for image in "$CORE_IMAGE" "$API_IMAGE"; do
  if command -v docker >/dev/null && timeout 30 docker image inspect "$image" >/dev/null 2>&1; then
    pm image exists "$image" || copied+=("$image")
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    if timeout 300 bash -c 'set -o pipefail; docker save "$1" | podman load --quiet' _ "$image" >/dev/null; then
      ok "image $image copied from Docker into podman"
    else
      fail "copying $image from Docker into podman"; finish
    fi
  elif pm image exists "$image"; then
    ok "image $image present in podman"
  else
    fail "image $image not found in Docker or podman (build it: nix build .#image && docker load < result, or scripts/build-images.sh)"
    finish
  fi
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
core_port=$(free_port) api_port=$(free_port)

# wait_http NAME URL EXPECTED_STATUS: poll until URL answers with that status (bounded).
wait_http() {
  local what=$1 url=$2 want=$3 code="" deadline=$((SECONDS + WAIT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 2 "$url" 2>/dev/null)
    [ "$code" = "$want" ] && { ok "$what: $url -> $code"; return 0; }
    sleep 1
  done
  fail "$what: $url -> ${code:-no answer} (wanted $want within ${WAIT}s)"
  return 1
}

# play NAME IMAGE HOST_PORT [VAR=VALUE...]: render, localize, kube play; sets pod_id / ctr_id.
play() {
  local name=$1 image=$2 port=$3 file="$tmp/${1#jessy-}.yaml"; shift 3
  if ! python3 tests/k8s/localize.py "$tmp/base.yaml" "$name" "$image" "$port" "$@" > "$file.new"; then
    fail "$name: localize"; return 1
  fi
  # podman maps an emptyDir to a named volume: give it a name that is ours alone.
  sed "s/^\(\s*-\? *name: \)tmp$/\1$VOL_PREFIX-${name#jessy-}-tmp/" "$file.new" > "$file"
  timeout 90 podman kube down "$file" >/dev/null 2>&1   # leftovers of an interrupted run
  if ! pm kube play "$file" > "$tmp/play.out" 2>&1; then
    fail "$name: podman kube play"; sed 's/^/     /' "$tmp/play.out"; return 1
  fi
  pod_id=$(awk '/^Pod:/{getline; print; exit}' "$tmp/play.out")
  ctr_id=$(awk '/^Container:/{getline; print; exit}' "$tmp/play.out")
  if [ -z "$pod_id" ] || [ -z "$ctr_id" ]; then
    fail "$name: podman kube play printed no pod/container"; sed 's/^/     /' "$tmp/play.out"; return 1
  fi
  ok "$name: podman kube play (pod ${pod_id:0:12})"
}

# The container runs as the Deployment's securityContext says.
check_security() {
  local name=$1 ctr=$2 info
  info=$(pm inspect "$ctr" --format '{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.EffectiveCaps}}|{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}')
  IFS='|' read -r user ro caps mounts <<< "$info"
  if [ "$user" = "1000:1000" ] && [ "$ro" = "true" ] && [ "$caps" = "[]" ] && [[ " $mounts" == *" /tmp:true "* ]]; then
    ok "$name: user 1000:1000, read-only root, no capabilities, writable /tmp"
  else
    fail "$name: security context not applied (user=$user readonly=$ro caps=$caps mounts=$mounts)"
  fi
}

# SIGTERM the app container (the infra container keeps the port open): readiness must turn 503
# while the process keeps serving for SHUTDOWN_DELAY, then it must exit 0 within the grace period.
check_shutdown() {
  local name=$1 ctr=$2 ready_url=$3 grace start elapsed code="" saw503=0 deadline exit_code
  grace=$(python3 -c 'import sys,yaml; d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"]=="Deployment"][0]; print(d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds",30))' "$tmp/${name#jessy-}.yaml")
  start=$SECONDS
  timeout $((grace + 30)) podman stop --time "$grace" "$ctr" > /dev/null 2>&1 &
  local stopper=$!
  deadline=$((SECONDS + 4))
  while [ "$SECONDS" -lt "$deadline" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$ready_url" 2>/dev/null)
    [ "$code" = 503 ] && { saw503=1; break; }
    sleep 0.2
  done
  wait "$stopper"
  elapsed=$((SECONDS - start))
  if [ "$saw503" = 1 ]; then ok "$name: readiness 503 right after SIGTERM"; else fail "$name: readiness after SIGTERM was ${code:-no answer}, not 503"; fi
  exit_code=$(pm inspect "$ctr" --format '{{.State.ExitCode}}')
  if [ "$exit_code" = 0 ] && [ "$elapsed" -lt "$grace" ]; then
    ok "$name: exited 0 after SIGTERM in ${elapsed}s (< terminationGracePeriodSeconds ${grace}s)"
  else
    fail "$name: after SIGTERM exit code ${exit_code:-?} after ${elapsed}s (grace ${grace}s)"
  fi
  if pm logs "$ctr" 2>&1 | grep -q 'shutdown complete'; then
    ok "$name: logged \"shutdown complete\""
  else
    fail "$name: no \"shutdown complete\" in the log"; pm logs --tail 20 "$ctr" 2>&1 | sed 's/^/     /'
  fi
}

if ! python3 tests/k8s/render.py deploy/k8s/base > "$tmp/base.yaml"; then fail "render deploy/k8s/base"; finish; fi

# probe_path NAME PROBE: the httpGet path of that probe in the rendered Deployment.
probe_path() { python3 tests/k8s/localize.py probes "$tmp/base.yaml" "$1" | awk -v p="$2" '$1 == p { print $2 }'; }

# 1. The core. Its probes' paths (from the manifests) must answer 200 through the published port.
if play jessy-core "$CORE_IMAGE" "$core_port"; then
  core_pod=$pod_id core_ctr=$ctr_id
  wait_http "jessy-core startupProbe/livenessProbe" "http://127.0.0.1:$core_port$(probe_path jessy-core livenessProbe)" 200 \
    && grep -q '"jessy-core"' "$tmp/body" && ok "jessy-core: health names the service"
  wait_http "jessy-core readinessProbe" "http://127.0.0.1:$core_port$(probe_path jessy-core readinessProbe)" 200
  check_security jessy-core "$core_ctr"
  infra=$(pm pod inspect "$core_pod" --format '{{.InfraContainerID}}')
  core_ip=$(pm inspect "$infra" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' | awk '{print $1}')
  if [[ $core_ip =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then ok "jessy-core: pod IP $core_ip"; else fail "jessy-core: no pod IP (${core_ip:-none})"; fi
fi

# 2. The gateway, pointed at the core pod.
if [ -n "${core_ip:-}" ] && play jessy-api "$API_IMAGE" "$api_port" "RUST_SERVICE_URL=http://$core_ip:8080"; then
  api_ctr=$ctr_id
  wait_http "jessy-api startupProbe/livenessProbe" "http://127.0.0.1:$api_port$(probe_path jessy-api livenessProbe)" 200
  wait_http "jessy-api readinessProbe (core reachable over the pod network)" "http://127.0.0.1:$api_port$(probe_path jessy-api readinessProbe)" 200
  wait_http "jessy-api -> jessy-core /api/v1/health" "http://127.0.0.1:$api_port/api/v1/health" 200 \
    && grep -q '"jessy-core"' "$tmp/body" && ok "gateway proxied the core's health"
  rm -f "$tmp/body"
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -H 'content-type: application/json' \
    -d '{"query":"how do I deploy jessy to kubernetes?"}' "http://127.0.0.1:$api_port/api/v1/query")
  if [ "$code" = 200 ]; then ok "POST /api/v1/query through the gateway -> 200"; else fail "POST /api/v1/query -> ${code:-no answer}"; head -c 300 "$tmp/body" 2>/dev/null | sed 's/^/     /'; echo; fi
  check_security jessy-api "$api_ctr"
  check_shutdown jessy-api "$api_ctr" "http://127.0.0.1:$api_port$(probe_path jessy-api readinessProbe)"
fi
[ -n "${core_ctr:-}" ] && check_shutdown jessy-core "$core_ctr" "http://127.0.0.1:$core_port$(probe_path jessy-core readinessProbe)"

finish
