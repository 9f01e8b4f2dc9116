#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: a number that
does not move with the machine's load, unlike req/s (bench/run.sh).

For each case one server runs under callgrind (the others natively) and is
sent a small and a large number of keep-alive GETs from 4 connections;
instructions per request = (large total - small total) / (large - small), so
startup cancels out. The count is user space only (the program and its
libraries, libc included): the kernel's TCP work, about half of a proxied
request's CPU here, is not in it.

Cases: axum-ref (the bare axum reference of bench/run.sh, GET /health),
core-health (jessy-core, GET /health), core-query and core-query-2k
(jessy-core, POST /api/v1/query with bench/run.sh's short and
2,000-character bodies; one access-log line each), api-health (jessy-api
with one worker thread, GET /api/v1/health -> core /health), nginx1-proxy
(Debian's nginx, one worker, keep-alive to the core, GET /health -> core
/health).

Usage: bench/callgrind.py [--requests SMALL,LARGE] [--only CASES] [--no-build]
                          [--keep DIR]
Needs cargo, valgrind, nginx. Loopback only; exit 1 on any error.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The same proxy config and query bodies as bench/run.sh.
from bench import SHORT_QUERY, long_query, nginx_conf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CASES = ("axum-ref", "core-health", "core-query", "core-query-2k", "api-health", "nginx1-proxy")
QUERY_BODIES = {
    "core-query": json.dumps({"query": SHORT_QUERY}),
    "core-query-2k": json.dumps({"query": long_query(2000)}),
}
CONNECTIONS = 4


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(target: Path) -> None:
    """Release binaries with symbols (callgrind's report names functions):
    jessy's in TARGET/release, the reference's in TARGET/reference/release."""
    for cwd, target_dir in ((REPO, target), (REPO / "bench" / "reference-axum",
                                             target / "reference")):
        env = os.environ | {
            "CARGO_TARGET_DIR": str(target_dir),
            "CARGO_PROFILE_RELEASE_STRIP": "false",
            "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only",
        }
        log(f"callgrind: cargo build --release --locked --bins in {cwd.relative_to(REPO.parent)}"
            f" (CARGO_TARGET_DIR={target_dir})")
        subprocess.run(["cargo", "build", "--release", "--locked", "--bins"],
                       cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_ok(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"callgrind: nothing answered 200 on 127.0.0.1:{port}{path}")


def load(port: int, path: str, total: int, body: str | None = None) -> None:
    """`total` GETs (POSTs of `body` when given) over CONNECTIONS keep-alive
    connections; each must be 200."""
    errors = []
    method = "GET" if body is None else "POST"
    headers = {} if body is None else {"Content-Type": "application/json"}

    def worker(count: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(count):
            c.request(method, path, body=body, headers=headers)
            res = c.getresponse()
            res.read()
            if res.status != 200:
                errors.append(res.status)
                return

    threads = [threading.Thread(target=worker, args=(total // CONNECTIONS,))
               for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"callgrind: non-200 answers under load: {errors[:5]}")


def count_once(case: str, target: Path, tmp: Path, base: int, requests: int) -> int:
    """Total instructions of the measured process for one load of `requests`."""
    core_port, front_port = base, base + 1
    service_env = os.environ | {"LOG_FORMAT": "json", "RUST_LOG": "info"}
    core_env = service_env | {"JESSY_HOST": "127.0.0.1", "JESSY_PORT": str(core_port)}
    vg_log = tmp / f"{case}-{requests}.log"
    valgrind = ["valgrind", "--tool=callgrind", f"--log-file={vg_log}",
                f"--callgrind-out-file={tmp}/{case}-{requests}.out"]
    bins = target / "release"
    procs = []
    try:
        if case == "axum-ref":
            # No graceful shutdown in the reference: SIGTERM ends it, and
            # callgrind still writes its totals.
            measured = subprocess.Popen(
                valgrind + [str(target / "reference" / "release" / "reference-axum")],
                env=os.environ | {"BIND": f"127.0.0.1:{core_port}"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(measured)
            port, path, stop = core_port, "/health", signal.SIGTERM
        elif case == "core-health" or case in QUERY_BODIES:
            measured = subprocess.Popen(valgrind + [str(bins / "jessy-core")], env=core_env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(measured)
            port, path, stop = core_port, "/health", signal.SIGINT
        else:
            procs.append(subprocess.Popen([str(bins / "jessy-core")], env=core_env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ok(core_port, "/health")
            if case == "api-health":
                api_env = service_env | {
                    "API_HOST": "127.0.0.1", "API_PORT": str(front_port),
                    "RUST_SERVICE_URL": f"http://127.0.0.1:{core_port}",
                    "RATE_LIMIT_ENABLED": "false", "WORKER_THREADS": "1",
                }
                cmd, path, stop = [str(bins / "jessy-api")], "/api/v1/health", signal.SIGINT
                measured = subprocess.Popen(valgrind + cmd, env=api_env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                conf = nginx_conf(tmp, 1, front_port, core_port, master=False)
                cmd = ["nginx", "-c", str(conf)]
                path, stop = "/health", signal.SIGQUIT
                measured = subprocess.Popen(valgrind + cmd, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            procs.append(measured)
            port = front_port
        wait_ok(port, path)
        if case in QUERY_BODIES:
            path = "/api/v1/query"
        load(port, path, requests, QUERY_BODIES.get(case))
        measured.send_signal(stop)
        measured.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    found = re.search(r"Collected : (\d+)", vg_log.read_text())
    if not found:
        raise SystemExit(f"callgrind: no total in {vg_log}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default="400,4400",
                        help="small and large request counts (default 400,4400)")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--no-build", action="store_true",
                        help="use the binaries of an earlier run")
    parser.add_argument("--port-base", type=int, default=24190)
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the callgrind files in DIR (for callgrind_annotate)")
    args = parser.parse_args()
    small, large = (int(n) for n in args.requests.split(","))
    if not 0 < small < large:
        raise SystemExit("callgrind: --requests needs 0 < SMALL < LARGE")
    cases = [c for c in args.only.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"callgrind: unknown cases {sorted(unknown)}; known: {CASES}")
    for tool in ("valgrind", "cargo") + (("nginx",) if "nginx1-proxy" in cases else ()):
        if not shutil.which(tool):
            raise SystemExit(f"callgrind: {tool} not found")
    for port in (args.port_base, args.port_base + 1):
        if not port_free(port):
            raise SystemExit(f"callgrind: 127.0.0.1:{port} already answers; use --port-base")

    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "bench-callgrind"
    if not args.no_build:
        build(target)
    per_request = {}
    with tempfile.TemporaryDirectory(prefix="jessy-callgrind.") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        for case in cases:
            totals = [count_once(case, target, tmp, args.port_base, n)
                      for n in (small, large)]
            per_request[case] = (totals[1] - totals[0]) / (large - small)
            log(f"callgrind: {case}: {totals[0]:,} / {totals[1]:,} instructions "
                f"for {small} / {large} requests")

    print(f"| case | instructions per request (user space; {large} - {small} requests) |")
    print("|---|---:|")
    for case, n in per_request.items():
        print(f"| {case} | {n:,.0f} |")
    print()
    for a, b in (("core-health", "axum-ref"), ("api-health", "nginx1-proxy"),
                 ("core-query", "core-health"), ("core-query-2k", "core-health")):
        if a in per_request and b in per_request:
            print(f"{a} / {b}: {per_request[a] / per_request[b]:.2f}× the instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
