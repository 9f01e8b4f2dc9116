#!/usr/bin/env bash
# End-to-end suite: the real docker-compose.yml, the real images, on this
# machine only (loopback ports, containers), bounded in time, and cleaned up
# even when it fails.
#
# Usage: tests/e2e/run.sh [--build | --static]
#   --build   run scripts/build-images.sh --test first (default: only when an
#             image is missing)
#   --static  only the checks that need no image and start nothing (compose
#             file, schema, Prometheus and Grafana configuration); seconds
# Environment:
#   COMPOSE           compose command (default: `docker compose`, else `docker-compose`)
#   JESSY_IMAGE_TAG   tag of the images under test (default latest)
#   E2E_KEEP=1        leave the stack running at the end (prints how to remove it)
#   E2E_ALLOW_SKIP=1  a missing promtool / check-jsonschema skips its check
#                     instead of failing it
#
# It runs against `docker-compose.yml` + `tests/e2e/compose.e2e.yml`; the
# override only publishes the core's port on 127.0.0.1 so its /metrics can be
# checked (the images have no shell and no curl to scrape from inside). The
# project name is unique (jessy-e2e-<pid>) and the published ports are free
# ones, so it does not disturb a stack started with `make up`.
#
# Output: one PASS/FAIL line per check, then `e2e: N passed, M failed`; the
# exit status is non-zero when anything failed. The monitor profile is only
# checked statically (its images cannot be pulled here); the dashboards'
# queries are run against a host Prometheus when one is installed.
#
# SC2015: `cond && check || { show; return 1; }` is meant to fail when either fails.
# SC2317: helpers defined inside checks are called indirectly (until_ok).
# shellcheck disable=SC2015,SC2317
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
E2E_DIR=$ROOT/tests/e2e

BUILD=auto
STATIC_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --build) BUILD=always ;;
    --static) STATIC_ONLY=1 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "e2e: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

die() { echo "e2e: $*" >&2; exit 2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: install $2"; }
need docker "Docker Engine (https://docs.docker.com/engine/install/)"
need curl "curl (apt-get install curl)"
need jq "jq (apt-get install jq)"
need python3 "python3 (apt-get install python3)"
need timeout "coreutils (apt-get install coreutils)"
timeout 20 docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon"

if [ -n "${COMPOSE:-}" ]; then
  read -r -a COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE_CMD=(docker-compose)
else
  die "neither \`docker compose\` nor docker-compose found: install the Docker Compose plugin (apt-get install docker-compose-plugin) or docker-compose"
fi

TAG=${JESSY_IMAGE_TAG:-latest}

# The suite sets every variable itself: nothing from the caller's shell or
# from a developer's .env may leak into the stack under test.
while IFS= read -r var; do
  unset "$var"
done < <(sed -n 's/^#\{0,1\} \{0,1\}\([A-Z_][A-Z0-9_]*\)=.*/\1/p' "$ROOT/.env.example")
unset COMPOSE_FILE COMPOSE_PATH_SEPARATOR COMPOSE_PROFILES COMPOSE_PROJECT_NAME

PROJECT="jessy-e2e-$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jessy-e2e.XXXXXX")
STACK_CREATED=0

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS: $1"; }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $1"
  if [ -n "${2:-}" ]; then head -n 40 <<<"$2" | while IFS= read -r line; do echo "      $line"; done; fi
}
skip() { echo "SKIP: $1"; }

# check NAME FUNCTION [ARGS...]: run a check function, PASS/FAIL by its status;
# its whole output is shown when it fails, only its "info: " lines when it passes.
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" = 0 ]; then
    pass "$name"
    grep '^info: ' <<<"$out" | while IFS= read -r line; do echo "      ${line#info: }"; done
  else
    fail "$name" "$out"
  fi
  return "$rc"
}

# A tool the suite cannot do without for one check: FAIL (or SKIP with
# E2E_ALLOW_SKIP=1) when it is missing. Returns 1 when the check must not run.
have_tool() {
  local tool=$1 what=$2 how=$3
  command -v "$tool" >/dev/null 2>&1 && return 0
  if [ "${E2E_ALLOW_SKIP:-0}" = 1 ]; then
    skip "$what ($tool not installed: $how)"
  else
    fail "$what" "$tool not installed: $how (or set E2E_ALLOW_SKIP=1)"
  fi
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
API_PORT=$(free_port)
CORE_PORT=$(free_port)
while [ "$CORE_PORT" = "$API_PORT" ]; do CORE_PORT=$(free_port); done
API=http://127.0.0.1:$API_PORT
CORE=http://127.0.0.1:$CORE_PORT

# The stack's settings (--env-file): phase A with a rate limit nobody reaches,
# phase B with a tiny one.
write_env() {
  cat >"$WORK/e2e.env" <<EOF
JESSY_IMAGE_TAG=$TAG
API_PUBLISH_ADDRESS=127.0.0.1
API_PUBLISH_PORT=$API_PORT
E2E_CORE_PUBLISH_PORT=$CORE_PORT
LOG_FORMAT=json
RUST_LOG=info
SHUTDOWN_TIMEOUT=10s
RATE_LIMIT_REQUESTS=$1
RATE_LIMIT_WINDOW=1m
RATE_LIMIT_BURST=$1
TEST_RUST_LOG=warn
EOF
}
write_env 100000

# compose [ARGS...]: the project under test, bounded by $CT seconds (default 120).
compose() {
  timeout "${CT:-120}" "${COMPOSE_CMD[@]}" -p "$PROJECT" --env-file "$WORK/e2e.env" \
    -f "$ROOT/docker-compose.yml" -f "$E2E_DIR/compose.e2e.yml" "$@"
}

# The container of a service of the project (also when it is stopped).
cid() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" \
    --filter "label=com.docker.compose.oneoff=False" | head -n1
}
inspect() { timeout 20 docker inspect -f "$2" "$1" 2>&1; }

project_leftovers() {
  local filter="label=com.docker.compose.project=$PROJECT"
  docker ps -aq --filter "$filter"
  docker network ls -q --filter "$filter"
  docker volume ls -q --filter "$filter"
}

cleanup() {
  local rc=$?
  if [ "$STACK_CREATED" = 1 ] && [ -n "$(project_leftovers)" ]; then
    if [ "$FAILED" != 0 ]; then
      echo "---- compose logs (last 60 lines per service) ----" >&2
      CT=60 compose logs --no-color --tail 60 >&2 2>&1 || true
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
      echo "e2e: stack kept: ${COMPOSE_CMD[*]} -p $PROJECT -f docker-compose.yml -f tests/e2e/compose.e2e.yml --env-file $WORK/e2e.env down -v" >&2
      exit "$rc"
    fi
    CT=120 compose --profile test down -v --remove-orphans -t 15 >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# http METHOD URL [curl args...]: sets CODE, BODY (file) and HEADERS (file).
BODY=$WORK/body
HEADERS=$WORK/headers
http() {
  local method=$1 url=$2
  shift 2
  CODE=$(curl -sS -X "$method" -o "$BODY" -D "$HEADERS" -w '%{http_code}' \
    --connect-timeout 3 --max-time 10 "$@" "$url" 2>"$WORK/curl.err") || CODE=000
}
header() { tr -d '\r' <"$HEADERS" | awk -v h="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': ' 'tolower($1) == h { print $2 }' | tail -n1; }
show() { echo "HTTP $CODE"; cat "$HEADERS" 2>/dev/null; head -c 2000 "$BODY" 2>/dev/null; echo; cat "$WORK/curl.err" 2>/dev/null; }

# until_ok SECONDS FUNCTION [ARGS...]: retry every 0.5 s until it succeeds or the deadline passes.
until_ok() {
  local deadline=$(($(date +%s) + $1)) out
  shift
  while :; do
    out=$("$@" 2>&1) && { [ -n "$out" ] && printf '%s\n' "$out"; return 0; }
    [ "$(date +%s)" -ge "$deadline" ] && { printf '%s\n' "$out"; return 1; }
    sleep 0.5
  done
}

# JSON of the merged compose configuration (v1 prints YAML only).
compose_config_json() {
  local -a base=("${COMPOSE_CMD[@]}" --env-file "$ROOT/.env.example" -f "$ROOT/docker-compose.yml")
  local out
  # docker-compose 1.x has no --format json (and exits 0 printing nothing).
  if out=$(timeout 60 "${base[@]}" "$@" config --format json 2>/dev/null) && [ "${out:0:1}" = "{" ]; then
    printf '%s\n' "$out"
    return 0
  fi
  timeout 60 "${base[@]}" "$@" config \
    | python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'
}

echo "e2e: project $PROJECT, compose: ${COMPOSE_CMD[*]}, gateway $API, core (test-only port) $CORE"

# =============================================================== static ====
check_compose_valid() {
  local profile
  for profile in "" test monitor; do
    local -a p=()
    [ -n "$profile" ] && p=(--profile "$profile")
    echo "profile ${profile:-default}:"
    timeout 60 "${COMPOSE_CMD[@]}" --env-file "$ROOT/.env.example" -f "$ROOT/docker-compose.yml" "${p[@]}" config -q || return 1
  done
  timeout 60 "${COMPOSE_CMD[@]}" --env-file "$WORK/e2e.env" -f "$ROOT/docker-compose.yml" -f "$E2E_DIR/compose.e2e.yml" config -q
}
check "compose file valid (default, test, monitor profiles; e2e override)" check_compose_valid

if have_tool check-jsonschema "compose file matches the Compose Specification schema" "pip install check-jsonschema"; then
  check "compose file matches the Compose Specification schema (check-jsonschema)" \
    timeout 120 check-jsonschema --builtin-schema vendor.compose-spec "$ROOT/docker-compose.yml" "$E2E_DIR/compose.e2e.yml"
fi

check_hardening_static() {
  compose_config_json --profile test --profile monitor >"$WORK/config.json" || return 1
  python3 - "$WORK/config.json" <<'PY'
import json, re, sys
c = json.load(open(sys.argv[1]))
s = c["services"]
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)
def seconds(d):
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", str(d)))
for name in ("jessy-core", "jessy-api", "jessy-test"):
    svc = s[name]
    expect(svc.get("read_only") is True, name + ": read_only is not true")
    expect(str(svc.get("user")) == "1000:1000", name + ": user is not 1000:1000")
    expect(svc.get("cap_drop") == ["ALL"], name + ": cap_drop is not [ALL]")
    expect("no-new-privileges:true" in (svc.get("security_opt") or []), name + ": no no-new-privileges")
    expect(any(str(t).startswith("/tmp") for t in (svc.get("tmpfs") or [])), name + ": no tmpfs /tmp")
    expect(svc.get("cpus") and svc.get("mem_limit"), name + ": no cpus/mem_limit")
    expect("build" not in svc, name + ": has build:")
for name in ("jessy-core", "jessy-api"):
    svc = s[name]
    hc = svc.get("healthcheck", {}).get("test")
    expect(hc == ["CMD", "/bin/" + name, "healthcheck"], "%s: healthcheck is %s" % (name, hc))
    expect(svc.get("restart") == "unless-stopped", name + ": restart is not unless-stopped")
    env = svc.get("environment", {})
    budget = seconds(env.get("SHUTDOWN_TIMEOUT", "30s")) + seconds(env.get("SHUTDOWN_DELAY", "0s"))
    expect(seconds(svc.get("stop_grace_period", "10s")) > budget,
           "%s: stop_grace_period not above SHUTDOWN_TIMEOUT + SHUTDOWN_DELAY (%ss)" % (name, budget))
core = s["jessy-core"]
expect(not core.get("ports"), "jessy-core publishes ports")
expect(list(core.get("networks") or {}) == ["internal"], "jessy-core networks: %s" % list(core.get("networks") or {}))
expect(c["networks"]["internal"].get("internal") is True, "network internal is not internal: true")
api = s["jessy-api"]
expect((api.get("depends_on") or {}).get("jessy-core", {}).get("condition") == "service_healthy",
       "jessy-api does not wait for jessy-core to be healthy")
def target(p):
    return str(p.get("target")) if isinstance(p, dict) else str(p).split("/")[0].split(":")[-1]
expect(any(target(p) == "3000" for p in api.get("ports", [])), "jessy-api does not publish 3000")
expect(set(api.get("networks") or {}) == {"internal", "edge"}, "jessy-api networks are not internal + edge")
expect(s["jessy-test"].get("profiles") == ["test"], "jessy-test is not in profile test")
for name in ("prometheus", "grafana", "jaeger"):
    expect(s[name].get("profiles") == ["monitor"], name + " is not in profile monitor")
    expect(":" in s[name]["image"] and not s[name]["image"].endswith(":latest"), name + ": image not pinned")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}
check "compose hardening, networks and dependencies as specified" check_hardening_static

check_no_version_key() { ! grep -qE '^(version|name):' "$ROOT/docker-compose.yml" && ! grep -qE '^[[:space:]]+build:' "$ROOT/docker-compose.yml"; }
check "compose file has no version:/build: keys" check_no_version_key

if have_tool promtool "Prometheus configuration valid" "apt-get install prometheus"; then
  check "Prometheus configuration and rules valid (promtool check config)" \
    timeout 60 promtool check config "$ROOT/deploy/prometheus/prometheus.yml"
fi

# Every PromQL expression of the dashboards, with Grafana's variables replaced.
dashboard_exprs() {
  jq -r '.. | objects | select(has("expr")) | .expr' "$ROOT"/deploy/grafana/dashboards/*.json \
    | sed -e "s/[$]__rate_interval/1m/g; s/[$]__interval/1m/g; s/[$]__range/1h/g"
}
check_grafana() {
  local f
  for f in "$ROOT"/deploy/grafana/dashboards/*.json; do
    jq -e '.uid and .title and (.panels | length > 0)' "$f" >/dev/null || { echo "$f: not a dashboard"; return 1; }
    # Every datasource uid a panel uses is provisioned.
    local uid
    for uid in $(jq -r '[.. | objects | select(has("datasource")) | .datasource | objects | .uid] | unique[]' "$f"); do
      grep -q "uid: $uid\$" "$ROOT"/deploy/grafana/provisioning/datasources/*.yml || { echo "$f: datasource uid $uid not provisioned"; return 1; }
    done
  done
  python3 - "$ROOT"/deploy/grafana/provisioning/*/*.yml <<'PY' || return 1
import sys
try:
    import yaml
except ImportError:
    sys.exit(0)
for path in sys.argv[1:]:
    yaml.safe_load(open(path))
PY
  command -v promtool >/dev/null 2>&1 || return 0
  # PromQL syntax: promtool parses the expressions as recording rules.
  {
    echo "groups:"
    echo "  - name: dashboard"
    echo "    rules:"
    local i=0 e
    while IFS= read -r e; do
      i=$((i + 1))
      printf '      - record: dashboard:expr_%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$e" '$e')"
    done < <(dashboard_exprs)
  } >"$WORK/dashboard-rules.yml"
  promtool check rules "$WORK/dashboard-rules.yml"
}
check "Grafana provisioning and dashboard valid (JSON, datasource uids, PromQL parses)" check_grafana

summary() {
  echo "e2e: $PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
}
if [ "$STATIC_ONLY" = 1 ]; then
  summary
  exit
fi

# =============================================================== images ====
IMAGES=(jessy-core jessy-api jessy-test)
missing=0
for img in "${IMAGES[@]}"; do
  docker image inspect "$img:$TAG" >/dev/null 2>&1 || missing=1
done
if [ "$BUILD" = always ] || [ "$missing" = 1 ]; then
  echo "e2e: building the images (scripts/build-images.sh --test)"
  if [ "$TAG" != "$(jq -r .tag deploy/images.json)" ]; then
    fail "images built" "scripts/build-images.sh tags the images as deploy/images.json says, not $TAG"
  elif bash scripts/build-images.sh --test >"$WORK/build.log" 2>&1; then
    pass "images built (scripts/build-images.sh --test)"
  else
    fail "images built (scripts/build-images.sh --test)" "$(tail -n 30 "$WORK/build.log")"
  fi
fi

# The image configuration is the one deploy/images.json describes.
check_image_config() {
  local name=$1
  docker image inspect "$name:$TAG" --format '{{json .Config}}' >"$WORK/image-$name.json" || return 1
  python3 - "$WORK/image-$name.json" "$name" "$ROOT/deploy/images.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
name = sys.argv[2]
d = json.load(open(sys.argv[3]))
img = d["images"][name]
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)
user = "%s:%s" % (d["user"]["uid"], d["user"]["gid"])
expect(cfg.get("User") == user, "User is %r, expected %r" % (cfg.get("User"), user))
expect(cfg.get("Entrypoint") == ["/bin/" + img["binary"]], "Entrypoint is %s" % cfg.get("Entrypoint"))
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
for k, v in img.get("env", {}).items():
    expect(env.get(k) == v, "Env %s=%r, expected %r" % (k, env.get(k), v))
if img.get("port"):
    expect("%s/tcp" % img["port"] in (cfg.get("ExposedPorts") or {}), "port %s not exposed" % img["port"])
# The Nix images (nix2container, OCI config) carry no healthcheck: compose
# supplies it. When the image has one (docker import), it must be this one.
hc = (cfg.get("Healthcheck") or {}).get("Test")
if hc is not None and img.get("healthcheck"):
    expect(hc == ["CMD"] + img["healthcheck"], "Healthcheck is %s" % hc)
labels = cfg.get("Labels") or {}
for k, v in d.get("labels", {}).items():
    expect(labels.get(k) == v, "label %s=%r" % (k, labels.get(k)))
for k in ("source", "revision", "version", "created", "title", "description"):
    expect(labels.get("org.opencontainers.image." + k), "label org.opencontainers.image.%s missing" % k)
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}

# No shell in the image: running /bin/sh fails because it does not exist.
check_no_shell_image() {
  local out
  if out=$(timeout 60 docker run --rm --network none --entrypoint /bin/sh "$1:$TAG" -c true 2>&1); then
    echo "/bin/sh ran in $1:$TAG: $out"
    return 1
  fi
  grep -qiE 'no such file|not found' <<<"$out" || { echo "unexpected failure: $out"; return 1; }
}

images_ok=1
for img in "${IMAGES[@]}"; do
  if ! docker image inspect "$img:$TAG" >/dev/null 2>&1; then
    fail "image $img:$TAG exists" "build it: scripts/build-images.sh --test (or make build / make load)"
    images_ok=0
    continue
  fi
  check "image $img:$TAG configured as deploy/images.json says (user, entrypoint, env, port, labels)" check_image_config "$img"
  check "image $img:$TAG has no shell (docker run --entrypoint /bin/sh fails)" check_no_shell_image "$img"
done

if [ "$images_ok" = 0 ]; then
  summary
  exit 1
fi

# ============================================================ phase A: up ==
T0=$(($(date +%s) - 1))
STACK_CREATED=1
if CT=240 compose up -d >"$WORK/up.log" 2>&1; then
  pass "stack starts: compose up -d (jessy-core, jessy-api)"
else
  fail "stack starts: compose up -d (jessy-core, jessy-api)" "$(tail -n 30 "$WORK/up.log")"
  summary
  exit 1
fi
CORE_CID=$(cid jessy-core)
API_CID=$(cid jessy-api)

healthy() { [ "$(inspect "$1" '{{.State.Health.Status}}')" = healthy ] || { inspect "$1" '{{.State.Status}} {{json .State.Health}}'; return 1; }; }
check_both_healthy() { until_ok 90 healthy "$CORE_CID" && until_ok 90 healthy "$API_CID"; }
check "jessy-core and jessy-api become healthy (docker healthchecks)" check_both_healthy

# Order, from the daemon's event log: the core's first "healthy" precedes the
# gateway container's start.
check_start_order() {
  timeout 30 docker events --since "$T0" --until "$(date +%s)" --filter type=container \
    --filter "label=com.docker.compose.project=$PROJECT" \
    --format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.Action}}' \
    >"$WORK/events" || return 1
  local core_healthy api_start
  core_healthy=$(awk '$2 == "jessy-core" && $3 == "health_status:" && $4 == "healthy" { print $1; exit }' "$WORK/events")
  api_start=$(awk '$2 == "jessy-api" && $3 == "start" { print $1; exit }' "$WORK/events")
  echo "core healthy at ${core_healthy:-never}, api started at ${api_start:-never}"
  [ -n "$core_healthy" ] && [ -n "$api_start" ] && [ "$core_healthy" -lt "$api_start" ] || return 1
  echo "info: core healthy $(((api_start - core_healthy) / 1000000)) ms before the gateway started"
}
check "jessy-core was healthy before jessy-api started (depends_on: service_healthy)" check_start_order

gateway_health_up() {
  http GET "$API/api/health"
  [ "$CODE" = 200 ] && jq -e '.status == "healthy" and .service == "jessy-api" and .upstream.state == "up"' "$BODY" >/dev/null || { show; return 1; }
}
check "GET /api/health: 200, healthy, upstream up" until_ok 15 gateway_health_up
ready_is() { http GET "$API/api/ready"; [ "$CODE" = "$1" ] || { show; return 1; }; }
check "GET /api/ready: 200 with the core up" until_ok 15 ready_is 200

core_counter() {
  # http_requests_total of the core for one route, summed over labels (0 if absent).
  curl -sS --max-time 5 "$CORE/metrics" | awk -v r="route=\"$1\"" 'index($0, "http_requests_total{") == 1 && index($0, r) { s += $NF } END { print s + 0 }'
}
check_query() {
  local rid="e2e-$$-query" sid="e2e-session-$$" before after
  before=$(core_counter /api/v1/query)
  http POST "$API/api/v1/query" -H 'Content-Type: application/json' -H "X-Request-Id: $rid" \
    --data "{\"query\":\"How do I design a secure and scalable system architecture?\",\"session_id\":\"$sid\"}"
  [ "$CODE" = 200 ] || { show; return 1; }
  jq -e --arg sid "$sid" '.session_id == $sid and (.status == "completed" or .status == "blocked")' "$BODY" >/dev/null \
    || { echo "unexpected body:"; show; return 1; }
  [ "$(header x-request-id)" = "$rid" ] || { echo "x-request-id not echoed:"; show; return 1; }
  after=$(core_counter /api/v1/query)
  echo "info: core http_requests_total{route=\"/api/v1/query\"}: $before -> $after"
  [ "$after" -gt "$before" ] 2>/dev/null || awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > b) }'
}
check "POST /api/v1/query through the gateway reaches the core (200, session_id, x-request-id echoed)" check_query

check_error_passthrough() {
  http POST "$API/api/v1/query" -H 'Content-Type: application/json' --data '{"query":""}'
  [ "$CODE" = 400 ] && jq -e '.error.code and .error.message and .error.request_id' "$BODY" >/dev/null || { show; return 1; }
  http GET "$API/api/v1/status"
  [ "$CODE" = 200 ] && jq -e '.service == "jessy-core" and (.dimensions_loaded | length == 14)' "$BODY" >/dev/null || { show; return 1; }
}
check "errors pass through as JSON (400 empty query) and /api/v1/status reaches the core" check_error_passthrough

scrape() { curl -sS --fail --max-time 5 "$1" >"$2"; }
check_metrics() {
  local name=$1 url=$2 file="$WORK/metrics-$1.txt"
  scrape "$url" "$file" || return 1
  local m missing=()
  for m in http_requests_total http_request_duration_seconds_bucket http_requests_in_flight \
    jessy_build_info process_resident_memory_bytes process_cpu_seconds_total process_start_time_seconds "${@:3}"; do
    grep -q "^${m}[{ ]" "$file" || missing+=("$m")
  done
  [ "${#missing[@]}" = 0 ] || { echo "missing metrics: ${missing[*]}"; return 1; }
  command -v promtool >/dev/null 2>&1 || return 0
  promtool check metrics <"$file"
}
if have_tool promtool "metrics pass promtool check metrics" "apt-get install prometheus"; then
  check "jessy-core /metrics: contract metrics present, promtool check metrics clean" check_metrics core "$CORE/metrics"
  check "jessy-api /api/metrics: contract metrics present, promtool check metrics clean" check_metrics api "$API/api/metrics" jessy_api_upstream_up jessy_api_upstream_duration_seconds_bucket
fi

check_build_info() {
  local label core_rev api_rev
  label=$(docker image inspect jessy-core:"$TAG" --format '{{index .Config.Labels "org.opencontainers.image.revision"}}')
  core_rev=$(sed -n 's/^jessy_build_info{.*revision="\([^"]*\)".*/\1/p' "$WORK/metrics-core.txt" | head -n1)
  api_rev=$(sed -n 's/^jessy_build_info{.*revision="\([^"]*\)".*/\1/p' "$WORK/metrics-api.txt" | head -n1)
  echo "image label $label, jessy-core $core_rev, jessy-api $api_rev"
  [ -n "$label" ] && [ "$core_rev" = "$label" ] && [ "$api_rev" = "$label" ]
}
if [ -f "$WORK/metrics-core.txt" ] && [ -f "$WORK/metrics-api.txt" ]; then
  check "jessy_build_info revision matches the image's org.opencontainers.image.revision" check_build_info
fi

# The dashboards' queries against a real Prometheus scraping the two
# services (the monitor profile's images cannot run here; a host Prometheus can).
check_host_prometheus() {
  local port
  port=$(free_port)
  mkdir -p "$WORK/prom"
  cat >"$WORK/prom/prometheus.yml" <<EOF
global: { scrape_interval: 1s, scrape_timeout: 1s }
scrape_configs:
  - job_name: jessy-core
    metrics_path: /metrics
    static_configs: [{ targets: ["127.0.0.1:$CORE_PORT"] }]
  - job_name: jessy-api
    metrics_path: /api/metrics
    static_configs: [{ targets: ["127.0.0.1:$API_PORT"] }]
EOF
  prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$WORK/prom/log" 2>&1 &
  # This runs in check's subshell (a global here is the subshell's own): stop
  # the Prometheus when the subshell ends, whatever happens.
  PROM_CHILD=$!
  trap 'kill "$PROM_CHILD" 2>/dev/null; wait "$PROM_CHILD" 2>/dev/null' EXIT
  local q="http://127.0.0.1:$port/api/v1/query"
  both_up() { [ "$(curl -sS --max-time 3 "$q" --data-urlencode 'query=sum(up{job=~"jessy-core|jessy-api"})' | jq -r '.data.result[0].value[1] // 0')" = 2 ]; }
  until_ok 30 both_up || { echo "targets not up:"; curl -sS --max-time 3 "http://127.0.0.1:$port/api/v1/targets" | jq -c '.data.activeTargets[] | {job: .labels.job, health, lastError}'; return 1; }
  # Some traffic, then a few scrapes so rate() has two samples.
  local i
  for i in 1 2 3 4 5; do
    curl -sS -o /dev/null --max-time 5 -X POST "$API/api/v1/query" -H 'Content-Type: application/json' --data '{"query":"dashboard check"}'
  done
  sleep 4
  local e rc=0 n
  while IFS= read -r e; do
    n=$(curl -sS --max-time 5 "$q" --data-urlencode "query=$e" | jq -r 'if .status == "success" then (.data.result | length) else "error: " + .error end')
    case "$n" in
      error*) echo "query failed: $e -> $n"; rc=1 ;;
      0) echo "no data (fine for rejections/5xx): $e" ;;
    esac
  done < <(dashboard_exprs)
  for e in 'process_resident_memory_bytes' 'rate(http_requests_total[1m])' 'http_request_duration_seconds_bucket' 'jessy_build_info' 'jessy_api_upstream_up'; do
    n=$(curl -sS --max-time 5 "$q" --data-urlencode "query=$e" | jq -r '.data.result | length')
    [ "$n" -gt 0 ] 2>/dev/null || { echo "no data for $e"; rc=1; }
  done
  return "$rc"
}
if command -v prometheus >/dev/null 2>&1; then
  check "a Prometheus scrapes both services and every dashboard query evaluates" check_host_prometheus
else
  skip "dashboard queries against a host Prometheus (prometheus not installed)"
fi

# ------------------------------------------------------------- hardening --
check_uid() {
  local c=$1 out
  out=$(timeout 20 docker top "$c" -eo uid,pid,comm) || { echo "$out"; return 1; }
  echo "$out"
  awk 'NR > 1 { n++; if ($1 != "1000") bad = 1 } END { exit !(n > 0 && !bad) }' <<<"$out" || return 1
  [ "$(inspect "$c" '{{.Config.User}}')" = "1000:1000" ]
}
check_readonly() {
  local c=$1 name=$2
  [ "$(inspect "$c" '{{.HostConfig.ReadonlyRootfs}}')" = true ] || { echo "ReadonlyRootfs is not true"; return 1; }
  inspect "$c" '{{json .HostConfig.Tmpfs}}' | grep -q '"/tmp"' || { echo "no tmpfs on /tmp"; return 1; }
  echo probe >"$WORK/probe"
  if timeout 20 docker cp "$WORK/probe" "$c:/probe" 2>"$WORK/cp.err"; then echo "docker cp into / succeeded"; return 1; fi
  cat "$WORK/cp.err"
  # exec works (the healthcheck subcommand) but there is no shell to exec.
  timeout 20 docker exec "$c" "/bin/$name" healthcheck || { echo "docker exec /bin/$name healthcheck failed"; return 1; }
  if timeout 20 docker exec "$c" /bin/sh -c 'echo x > /x' 2>&1; then echo "/bin/sh ran in $name"; return 1; fi
  return 0
}
check_runtime_limits() {
  local c=$1
  inspect "$c" 'CapDrop={{json .HostConfig.CapDrop}} SecurityOpt={{json .HostConfig.SecurityOpt}} NanoCpus={{.HostConfig.NanoCpus}} Memory={{.HostConfig.Memory}} PidsLimit={{.HostConfig.PidsLimit}} Restart={{.HostConfig.RestartPolicy.Name}} StopTimeout={{.Config.StopTimeout}}' \
    | tee /dev/stderr | grep -qE 'CapDrop=\["ALL"\] SecurityOpt=\["no-new-privileges:true"\] NanoCpus=[1-9][0-9]* Memory=[1-9][0-9]* PidsLimit=[1-9][0-9]* Restart=unless-stopped StopTimeout=45$'
}
for svc in jessy-core jessy-api; do
  c=$(cid "$svc")
  check "$svc runs as uid 1000 (docker top, Config.User)" check_uid "$c"
  check "$svc root filesystem is read-only, /tmp is tmpfs, exec has no shell" check_readonly "$c" "$svc"
  check "$svc caps dropped, no-new-privileges, cpu/memory/pids limits, restart policy, stop timeout" check_runtime_limits "$c"
done

check_internal_network() {
  local net
  net=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.network=internal")
  [ -n "$net" ] || { echo "no internal network"; return 1; }
  [ "$(inspect "$net" '{{.Internal}}')" = true ] || { echo "network is not internal"; return 1; }
  local members
  members=$(docker network inspect "$net" -f '{{range .Containers}}{{.Name}} {{end}}')
  echo "internal network members: $members"
  # Only the core and the gateway (the probe network of compose.e2e.yml aside).
  [ "$(wc -w <<<"$members")" = 2 ]
}
check "the core's network is internal: true and holds only core and gateway" check_internal_network

# ---------------------------------------------------------- test profile --
check_test_profile() {
  CT=600 compose --profile test run --rm -T jessy-test >"$WORK/bdd.log" 2>&1
  local rc=$?
  echo "exit code $rc"
  tail -n 40 "$WORK/bdd.log"
  [ "$rc" = 0 ] || return 1
  grep -E '^[0-9]+ scenarios' "$WORK/bdd.log" | sed 's/^/info: BDD against the stack: /'
  # A run that executed no scenario proves nothing.
  grep -qE '^[1-9][0-9]* scenarios \(' "$WORK/bdd.log" || { echo "no scenario ran"; return 1; }
}
check "profile test: compose run --rm jessy-test passes against the stack" check_test_profile

# ------------------------------------------------------ upstream outage --
API_STARTED=$(inspect "$API_CID" '{{.State.StartedAt}}')
check_core_stops_cleanly() {
  local since
  since=$(date +%s)
  CT=90 compose stop jessy-core || return 1
  [ "$(inspect "$CORE_CID" '{{.State.Status}} {{.State.ExitCode}}')" = "exited 0" ] \
    || { inspect "$CORE_CID" '{{.State.Status}} exit {{.State.ExitCode}}'; return 1; }
  docker logs --since "$((since - 1))" "$CORE_CID" 2>&1 | grep -q 'shutdown complete' \
    || { echo "no 'shutdown complete' in the core's log"; docker logs --tail 20 "$CORE_CID" 2>&1; return 1; }
}
check "compose stop jessy-core: exit code 0, 'shutdown complete' logged" check_core_stops_cleanly

query_fails_cleanly() {
  http POST "$API/api/v1/query" -H 'Content-Type: application/json' --data '{"query":"is anyone there?"}'
  { [ "$CODE" = 502 ] || [ "$CODE" = 503 ]; } && jq -e '.error.code and .error.request_id' "$BODY" >/dev/null || { show; return 1; }
  echo "info: HTTP $CODE $(jq -c .error.code "$BODY")"
}
check "core down: the gateway answers 502/503 with a JSON error" until_ok 20 query_fails_cleanly
check "core down: GET /api/ready answers 503" until_ok 20 ready_is 503
gateway_health_down() {
  http GET "$API/api/health"
  [ "$CODE" = 200 ] && jq -e '.upstream.state == "down"' "$BODY" >/dev/null || { show; return 1; }
}
check "core down: GET /api/health stays 200 and reports upstream down" until_ok 20 gateway_health_down

check_recovery() {
  CT=60 compose start jessy-core || return 1
  query_ok() { http POST "$API/api/v1/query" -H 'Content-Type: application/json' --data '{"query":"back again?"}'; [ "$CODE" = 200 ] || { show; return 1; }; }
  until_ok 45 query_ok || return 1
  until_ok 20 ready_is 200 || return 1
  local now restarts
  now=$(inspect "$API_CID" '{{.State.StartedAt}}')
  restarts=$(inspect "$API_CID" '{{.RestartCount}}')
  [ "$now" = "$API_STARTED" ] && [ "$restarts" = 0 ] || { echo "the gateway was restarted ($API_STARTED -> $now, restarts $restarts)"; return 1; }
}
check "core back: queries and /api/ready recover without restarting the gateway" check_recovery

# ========================================================= phase B: 429 ==
write_env 5
check_recreate_api() {
  CT=120 compose up -d --no-deps jessy-api >"$WORK/up-b.log" 2>&1 || { cat "$WORK/up-b.log"; return 1; }
  local c
  c=$(cid jessy-api)
  [ "$c" != "$API_CID" ] || { echo "jessy-api was not recreated"; return 1; }
  until_ok 60 healthy "$c"
}
check "gateway recreated with RATE_LIMIT_REQUESTS=5 and healthy" check_recreate_api
API_CID=$(cid jessy-api)

check_rate_limit() {
  local i
  for i in $(seq 1 40); do
    http GET "$API/api/v1/status"
    [ "$CODE" = 429 ] && break
    { [ "$CODE" = 200 ] || [ "$CODE" = 502 ] || [ "$CODE" = 503 ]; } || { show; return 1; }
  done
  [ "$CODE" = 429 ] || { echo "no 429 after $i requests"; show; return 1; }
  echo "info: 429 after $i requests, Retry-After: $(header retry-after)"
  local retry
  retry=$(header retry-after)
  [[ "$retry" =~ ^[0-9]+$ ]] && [ "$retry" -ge 1 ] || { echo "Retry-After is '$retry'"; show; return 1; }
  jq -e '.error.code == "rate_limited"' "$BODY" >/dev/null || { show; return 1; }
}
check "rate limit: 429 rate_limited with Retry-After" check_rate_limit

check_rejection_metric() {
  scrape "$API/api/metrics" "$WORK/metrics-api-b.txt" || return 1
  grep -E '^jessy_api_rejections_total\{.*reason="rate_limited".*\} [1-9]' "$WORK/metrics-api-b.txt" \
    || { grep jessy_api_rejections_total "$WORK/metrics-api-b.txt"; return 1; }
  # Health probes are not rate limited: the container stays healthy.
  sleep 3
  healthy "$API_CID"
}
check "rate limit: jessy_api_rejections_total{reason=rate_limited} counts it; gateway stays healthy" check_rejection_metric

# ====================================================== phase C: stop ==
check_stop_all() {
  local since rc=0 c svc
  since=$(date +%s)
  CT=120 compose stop || return 1
  for svc in jessy-api jessy-core; do
    c=$(cid "$svc")
    local state
    state=$(inspect "$c" '{{.State.Status}} {{.State.ExitCode}}')
    echo "$svc: $state"
    [ "$state" = "exited 0" ] || rc=1
    local log
    log=$(docker logs --since "$((since - 1))" "$c" 2>&1)
    grep -q 'shutdown started' <<<"$log" || { echo "$svc: no 'shutdown started' logged"; rc=1; }
    grep -q 'shutdown complete' <<<"$log" || { echo "$svc: no 'shutdown complete' logged"; rc=1; }
  done
  return "$rc"
}
check "compose stop: both exit with code 0 after logging 'shutdown started' / 'shutdown complete'" check_stop_all

check_json_logs() {
  local svc c rc=0
  for svc in jessy-core jessy-api; do
    c=$(cid "$svc")
    docker logs "$c" >"$WORK/log-$svc" 2>&1 || return 1
    python3 - "$svc" "$WORK/log-$svc" <<'PY' || rc=1
import json, sys
svc, path = sys.argv[1], sys.argv[2]
lines = [l for l in open(path, encoding="utf-8", errors="replace") if l.strip()]
bad = []
for l in lines:
    try:
        obj = json.loads(l)
        if not isinstance(obj.get("message"), str):
            bad.append(l)
    except ValueError:
        bad.append(l)
if bad or not lines:
    print("%s: %d of %d log lines are not JSON with a top-level message:" % (svc, len(bad), len(lines)))
    print("".join(bad[:5]))
    sys.exit(1)
print("info: %s: %d JSON log lines" % (svc, len(lines)))
PY
  done
  return "$rc"
}
check "logs are JSON lines with a top-level \"message\" (LOG_FORMAT=json)" check_json_logs

check_down() {
  CT=120 compose --profile test down -v --remove-orphans || return 1
  local left
  left=$(project_leftovers)
  [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}
if [ "$FAILED" != 0 ]; then
  echo "---- compose logs (last 60 lines per service) ----" >&2
  CT=60 compose logs --no-color --tail 60 >&2 2>&1 || true
fi
check "compose down -v leaves no container, network or volume of the project" check_down

summary
