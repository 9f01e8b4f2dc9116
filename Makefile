# Jessy: a thin layer over Nix, cargo and Docker Compose.
# `make` (or `make help`) lists the targets. Nothing here is needed to build:
# every recipe is one or two commands you can also type yourself.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Compose project name (containers: jessy-jessy-core-1 / jessy_jessy-core_1).
PROJECT ?= jessy
# Extra cargo flags for the test targets, e.g. CARGO_FLAGS="--features otel".
CARGO_FLAGS ?=
# Seconds `up` / `run-local` wait for the services to become healthy.
WAIT_TIMEOUT ?= 90

# `docker compose` (v2) when present, else docker-compose (1.x). Override with
# COMPOSE="..." on the command line.
ifeq ($(origin COMPOSE), undefined)
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
                   elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
endif
DC = $(COMPOSE) -p $(PROJECT)

# $(call need,TOOL,HOW TO INSTALL): one-line error when TOOL is missing.
need = command -v $(1) >/dev/null 2>&1 || { echo "make: '$(1)' not found; install $(2)" >&2; exit 127; }
# $(call need-cargo,SUBCOMMAND,CRATE): the same for a cargo subcommand.
need-cargo = cargo $(1) --version >/dev/null 2>&1 || { echo "make: 'cargo $(1)' not found; install it: cargo install --locked $(2) (or use 'make shell')" >&2; exit 127; }
NEED_COMPOSE = [ -n "$(COMPOSE)" ] || { echo "make: Docker Compose not found; install the Docker Compose plugin (docker-compose-plugin) or docker-compose" >&2; exit 127; }
NEED_DOCKER = $(call need,docker,Docker Engine: https://docs.docker.com/engine/install/)
# Flakes and `nix` commands are enabled per call, so a default Nix install
# works; crane (the flake's builder) wants Nix 2.31 or later.
NIX = nix --extra-experimental-features 'nix-command flakes'
NEED_NIX = $(call need,nix,Nix: https://nixos.org/download (or use 'make run-local' / 'make test-all' without Nix)); \
  v=$$(nix --version | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1); \
  printf '2.31\n%s\n' "$$v" | sort -V -C || { echo "make: Nix $$v found; the flake needs Nix 2.31 or later: https://nixos.org/download (or use 'make run-local' / 'make test-all' without Nix)" >&2; exit 127; }
NEED_CARGO = $(call need,cargo,Rust: https://rustup.rs (or use 'make shell'))

# ------------------------------------------------------------------ help ----
.PHONY: help
help: ## Show this help
	@if [ -t 1 ]; then b=$$'\033[1m' c=$$'\033[36m' r=$$'\033[0m'; else b= c= r=; fi; \
	awk -v b="$$b" -v c="$$c" -v r="$$r" 'BEGIN { FS = ":.*## " } \
	  /^##@/ { printf "\n%s%s%s\n", b, substr($$0, 5), r; next } \
	  /^[a-zA-Z0-9_-]+:.*## / { printf "  %s%-17s%s %s\n", c, $$1, r, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: PROJECT=$(PROJECT) COMPOSE='$(COMPOSE)' CARGO_FLAGS='$(CARGO_FLAGS)'"

##@ Stack (Docker Compose)
.PHONY: up up-monitor down ps logs logs-core logs-api restart wait urls
IMAGES_HINT = { echo "make: could not start the stack; if an image is missing, build it: 'make build' (Nix) or 'make images' (cargo + docker)" >&2; exit 1; }

up: ## Start jessy-core + jessy-api in the background, wait until healthy
	@$(NEED_COMPOSE)
	$(DC) up -d || $(IMAGES_HINT)
	@$(MAKE) wait urls

up-monitor: ## `up` plus Prometheus, Grafana and Jaeger (traces exported to Jaeger)
	@$(NEED_COMPOSE)
	COMPOSE_PROFILES=monitor OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317 $(DC) up -d || $(IMAGES_HINT)
	@$(MAKE) wait urls

down: ## Stop and remove the containers (volumes are kept; see clean)
	@$(NEED_COMPOSE)
	$(DC) --profile test --profile monitor down --remove-orphans

ps: ## List the stack's containers and their health
	@$(NEED_COMPOSE)
	$(DC) --profile test --profile monitor ps

logs: ## Follow the logs of every service
	@$(NEED_COMPOSE)
	$(DC) logs -f --tail=100

logs-core: ## Follow jessy-core's logs
	@$(NEED_COMPOSE)
	$(DC) logs -f --tail=100 jessy-core

logs-api: ## Follow jessy-api's logs
	@$(NEED_COMPOSE)
	$(DC) logs -f --tail=100 jessy-api

restart: ## Restart the running services (graceful: SIGTERM, drain, start)
	@$(NEED_COMPOSE)
	$(DC) restart
	@$(MAKE) wait

wait: ## Wait (up to WAIT_TIMEOUT s) until jessy-core and jessy-api are healthy
	@$(NEED_COMPOSE)
	@deadline=$$(( $$(date +%s) + $(WAIT_TIMEOUT) )); \
	for svc in jessy-core jessy-api; do \
	  while :; do \
	    id=$$($(DC) ps -q $$svc 2>/dev/null || true); \
	    state=$$( [ -n "$$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $$id 2>/dev/null || true); \
	    [ "$$state" = healthy ] && { echo "$$svc: healthy"; break; }; \
	    if [ $$(date +%s) -ge $$deadline ]; then \
	      echo "make: $$svc is not healthy after $(WAIT_TIMEOUT)s (state: $${state:-no container}); see 'make logs'" >&2; exit 1; \
	    fi; \
	    sleep 1; \
	  done; \
	done

urls: ## Print the URLs of the running stack
	@$(NEED_COMPOSE)
	@url() { local a; a=$$($(DC) port "$$1" "$$2" 2>/dev/null | head -n1) || true; \
	  [ -n "$$a" ] && echo "http://$${a/0.0.0.0/localhost}" || true; }; \
	api=$$(url jessy-api 3000); prom=$$(url prometheus 9090); graf=$$(url grafana 3000); jaeger=$$(url jaeger 16686); \
	[ -n "$$api" ] && echo "Gateway:    $$api  (/api/health, /api/ready, /api/metrics, POST /api/v1/query)"; \
	[ -n "$$prom" ] && echo "Prometheus: $$prom"; \
	[ -n "$$graf" ] && echo "Grafana:    $$graf  (dashboard 'Jessy overview'; admin login from .env)"; \
	[ -n "$$jaeger" ] && echo "Jaeger:     $$jaeger"; \
	true

##@ Images (Nix)
.PHONY: build load rebuild
build: ## Build the three images with Nix and load them into Docker
	@$(NEED_NIX)
	@$(NEED_DOCKER)
	$(NIX) build .#image -o result-core
	$(NIX) build .#image-api -o result-api
	$(NIX) build .#image-test -o result-test
	@$(MAKE) load

# A result is a docker-archive tarball (docker load < result), a streaming
# script (./result | docker load) or a nix2container JSON (copyToDockerDaemon).
load: ## Load already built images (result-core, result-api, result-test) into Docker
	@$(NEED_DOCKER)
	@for pair in core:image api:image-api test:image-test; do \
	  f=result-$${pair%%:*}; attr=$${pair#*:}; \
	  [ -e "$$f" ] || { echo "make: $$f missing; run 'make build' first" >&2; exit 1; }; \
	  if [ -f "$$f" ] && head -c 2 "$$f" | grep -q '#!'; then echo "$$f | docker load"; "./$$f" | docker load; \
	  elif [ -f "$$f" ] && head -c 1 "$$f" | grep -q '{'; then echo "nix run .#$$attr.copyToDockerDaemon"; $(NIX) run ".#$$attr.copyToDockerDaemon"; \
	  else echo "docker load < $$f"; docker load < "$$f"; fi; \
	done

rebuild: build ## build, then recreate the running containers from the new images
	@$(NEED_COMPOSE)
	$(DC) up -d --force-recreate
	@$(MAKE) wait urls

##@ Without Nix (Rust + Docker only)
.PHONY: run-local test-all images provision
run-local: ## Set up and run: the shipped static images (built here), the stack, wait until healthy
	@$(NEED_DOCKER)
	scripts/provision.sh run
	@$(NEED_COMPOSE)
	scripts/build-images.sh
	$(DC) up -d
	@$(MAKE) wait urls

images: ## Build the images as the flake does (static musl, skopeo archives, docker load); --test: TEST=1
	scripts/build-images.sh $(if $(TEST),--test)

test-all: ## The whole suite: installs what it needs (scripts/provision.sh), then scripts/test-all.sh
	scripts/provision.sh test
	scripts/test-all.sh

provision: ## Only install what test-all needs (pinned; says what it will do first)
	scripts/provision.sh test

##@ Tests and checks
.PHONY: bench bench-instr soak test test-unit test-integration test-bdd test-e2e lint-deploy coverage fmt clippy ci watch
test: ## All tests (unit, integration, BDD) with nextest
	@$(NEED_CARGO)
	@$(call need-cargo,nextest,cargo-nextest)
	cargo nextest run $(CARGO_FLAGS)

test-unit: ## Unit tests (the library)
	@$(NEED_CARGO)
	@$(call need-cargo,nextest,cargo-nextest)
	cargo nextest run --lib $(CARGO_FLAGS)

test-integration: ## Integration tests (both binaries, spawned on loopback)
	@$(NEED_CARGO)
	@$(call need-cargo,nextest,cargo-nextest)
	cargo nextest run --test integration $(CARGO_FLAGS)

test-bdd: ## BDD scenarios (tests/features) against locally spawned services
	@$(NEED_CARGO)
	@$(call need-cargo,nextest,cargo-nextest)
	cargo nextest run --test bdd $(CARGO_FLAGS)

bench: ## Benchmarks on loopback (wrk, oha if installed; about 8 min; BENCH_ARGS=--quick for 1 min)
	bench/run.sh $(BENCH_ARGS)

soak: ## Soak the shipped build: a fixed rate through the gateway while the core restarts twice (~3 min; SOAK_ARGS)
	bench/run.sh --soak $(SOAK_ARGS)

bench-instr: ## Instructions per request under callgrind (steady on a busy machine; ~8 min)
	bench/callgrind.py $(BENCH_ARGS)

test-e2e: ## End-to-end suite against the compose stack (needs the images)
	@$(NEED_DOCKER)
	tests/e2e/run.sh

lint-deploy: ## Static checks of compose, Prometheus and Grafana configuration
	tests/e2e/run.sh --static

coverage: ## Tests with line coverage; fails under 80% (as the flake's check, in its sandbox rehearsal)
	scripts/sandbox-checks.sh coverage

fmt: ## Format the Rust code
	@$(NEED_CARGO)
	cargo fmt --all

clippy: ## Lint with clippy; warnings are errors
	@$(NEED_CARGO)
	cargo clippy --all-targets --all-features -- -D warnings

ci: ## What CI runs: every Nix check (build, tests, clippy, fmt, deny, ...)
	@$(NEED_NIX)
	$(NIX) flake check -L

watch: ## Re-run the tests on every change (bacon, else cargo-watch)
	@if command -v bacon >/dev/null 2>&1; then bacon nextest; \
	elif cargo watch --version >/dev/null 2>&1; then cargo watch -c -x "nextest run $(CARGO_FLAGS)"; \
	else echo "make: neither bacon nor cargo-watch found; install one: cargo install --locked bacon (or use 'make shell')" >&2; exit 127; fi

##@ Development
.PHONY: shell clean
shell: ## Enter the Nix development shell (toolchain and every tool above)
	@$(NEED_NIX)
	$(NIX) develop

clean: ## Remove the stack with its volumes, and the Nix result links
	@if [ -n "$(COMPOSE)" ]; then $(DC) --profile test --profile monitor down -v --remove-orphans; fi
	rm -f result result-core result-api result-test
