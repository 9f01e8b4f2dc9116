#!/usr/bin/env python3
"""Soak of jessy-api in front of jessy-core, with the core restarted twice.

Runs the two release binaries on 127.0.0.1, offers a fixed rate of
requests through the gateway for --duration seconds (a mix of POST
/api/v1/query and GET /api/v1/status on keep-alive connections), restarts
the core (SIGTERM, wait for its exit, start it again) at one third and two
thirds of the run, and prints:

- what clients got, by status, in each phase (steady, each restart: from
  the SIGTERM until the new core answers /ready, plus 2 s);
- RSS of both services over time;
- per restart: how long the core was away and the first and last non-2xx.

Python stdlib only; stops by itself (every wait is bounded, the children
are killed on exit). Not a timed test: nothing here passes or fails on
speed; the exit status is 1 only if a service does not start or a request
got an answer that is not a well-formed HTTP status the gateway documents.

    bench/soak.py --core-bin target/release/jessy-core \\
                  --api-bin target/release/jessy-api --duration 180
"""

import argparse
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

# Keep-alive connections idle for longer are not reused (see Load.work).
IDLE_REUSE = 5.0

# Statuses the gateway may answer on these paths (anything else is a bug).
EXPECTED = {200, 400, 408, 413, 429, 502, 503, 504}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def answers(port: int, path: str, status: int = 200) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", path)
        ok = c.getresponse().status == status
        c.close()
        return ok
    except OSError:
        return False


def wait_until(check, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


class Service:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        self.name, self.cmd, self.env = name, cmd, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self, limit: float = 40.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


class Load:
    """A fixed offered rate: a ticket every 1/rate s, taken by a pool of
    workers with keep-alive connections. A ticket no worker could take in
    time is counted as `dropped` (the offered rate was not met)."""

    def __init__(self, port: int, rate: float, workers: int, timeout: float):
        self.port, self.rate, self.timeout = port, rate, timeout
        self.tickets: queue.Queue = queue.Queue(maxsize=workers * 4)
        self.results: list[tuple[float, str]] = []  # (time since start, outcome)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.dropped = 0
        self.threads = [threading.Thread(target=self.work, args=(i,), daemon=True)
                        for i in range(workers)]

    def run(self, duration: float) -> None:
        for t in self.threads:
            t.start()
        n = 0
        while not self.stop.is_set():
            due = self.t0 + n / self.rate
            if due - self.t0 >= duration:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                self.tickets.put_nowait(n)
            except queue.Full:
                self.dropped += 1
            n += 1
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 2)

    def work(self, i: int) -> None:
        conn, last_used = None, 0.0
        body = json.dumps({"query": "How do I fix a memory leak in my Rust code?"}).encode()
        while not self.stop.is_set():
            try:
                n = self.tickets.get(timeout=0.2)
            except queue.Empty:
                continue
            # A connection idle for longer than the gateway keeps idle ones
            # (HEADER_READ_TIMEOUT, 10 s) may be closed as the request goes
            # out, which no server can prevent: clients drop them sooner.
            if conn is not None and time.monotonic() - last_used > IDLE_REUSE:
                conn.close()
                conn = None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                if n % 4 == 3:
                    conn.request("GET", "/api/v1/status")
                else:
                    conn.request("POST", "/api/v1/query", body=body,
                                 headers={"content-type": "application/json"})
                res = conn.getresponse()
                res.read()
                outcome = str(res.status)
                if res.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (socket.timeout, TimeoutError):
                outcome = "client_timeout"
                conn.close()
                conn = None
            except (OSError, http.client.HTTPException) as e:
                outcome = "conn_error:" + type(e).__name__
                conn.close()
                conn = None
            last_used = time.monotonic()
            with self.lock:
                self.results.append((last_used - self.t0, outcome))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--core-bin", required=True)
    ap.add_argument("--api-bin", required=True)
    ap.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    ap.add_argument("--rate", type=float, default=200, help="offered requests/s (default 200)")
    ap.add_argument("--workers", type=int, default=32, help="client connections (default 32)")
    ap.add_argument("--sample", type=float, default=10, help="RSS sample interval, s (default 10)")
    args = ap.parse_args()

    core_port, api_port = free_port(), free_port()
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_FORMAT": "json",
            "RUST_LOG": "warn", "SHUTDOWN_DELAY": "0s", "SHUTDOWN_TIMEOUT": "5s"}
    core = Service("jessy-core", [args.core_bin],
                   {**base, "JESSY_HOST": "127.0.0.1", "JESSY_PORT": str(core_port)})
    api = Service("jessy-api", [args.api_bin],
                  {**base, "API_HOST": "127.0.0.1", "API_PORT": str(api_port),
                   "RUST_SERVICE_URL": f"http://127.0.0.1:{core_port}",
                   "RATE_LIMIT_ENABLED": "false", "UPSTREAM_PROBE_INTERVAL": "500ms"})
    try:
        core.start()
        api.start()
        if not (wait_until(lambda: answers(core_port, "/ready"), 15)
                and wait_until(lambda: answers(api_port, "/api/ready"), 15)):
            print("soak: the services did not become ready", file=sys.stderr)
            return 1
        load = Load(api_port, args.rate, args.workers, timeout=15)
        restarts: list[dict] = []
        rss: list[tuple[float, int | None, int | None]] = []

        def conductor() -> None:
            for at in (args.duration / 3, 2 * args.duration / 3):
                while time.monotonic() - load.t0 < at and not load.stop.is_set():
                    time.sleep(0.05)
                if load.stop.is_set():
                    return
                r = {"sigterm": time.monotonic() - load.t0}
                core.stop()
                r["exited"] = time.monotonic() - load.t0
                core.start()
                wait_until(lambda: answers(core_port, "/ready"), 30)
                r["ready"] = time.monotonic() - load.t0
                restarts.append(r)

        def sampler() -> None:
            while not load.stop.is_set():
                rss.append((time.monotonic() - load.t0, rss_kib(core.pid or 0), rss_kib(api.pid or 0)))
                load.stop.wait(args.sample)
            rss.append((time.monotonic() - load.t0, rss_kib(core.pid or 0), rss_kib(api.pid or 0)))

        threads = [threading.Thread(target=conductor, daemon=True),
                   threading.Thread(target=sampler, daemon=True)]
        for t in threads:
            t.start()
        print(f"soak: {args.rate:g} req/s offered for {args.duration:g} s through jessy-api "
              f"(:{api_port}) to jessy-core (:{core_port}), core restarted at 1/3 and 2/3")
        load.run(args.duration)
        for t in threads:
            t.join(60)
    finally:
        api.stop()
        core.stop()

    # Phases: steady, and each restart from its SIGTERM to 2 s after ready.
    bounds = []
    for i, r in enumerate(restarts, 1):
        bounds.append((r["sigterm"], r["ready"] + 2, f"restart {i}"))

    def phase(t: float) -> str:
        for start, end, name in bounds:
            if start <= t < end:
                return name
        return "steady"

    by_phase: dict[str, Counter] = {}
    for t, outcome in load.results:
        by_phase.setdefault(phase(t), Counter())[outcome] += 1
    outcomes = sorted({o for c in by_phase.values() for o in c})
    names = ["steady"] + [b[2] for b in bounds]
    width = max([12] + [len(o) for o in outcomes])
    print("\nWhat clients got, by phase (counts):")
    print(f"{'outcome':<{width}} " + " ".join(f"{n:>10}" for n in names))
    for o in outcomes:
        print(f"{o:<{width}} " + " ".join(f"{by_phase.get(n, Counter())[o]:>10}" for n in names))
    total = sum(sum(c.values()) for c in by_phase.values())
    print(f"{'total':<{width}} " + " ".join(f"{sum(by_phase.get(n, Counter()).values()):>10}" for n in names))
    print(f"answered {total}, offered {int(args.rate * args.duration)}, "
          f"not sent (no free client in time) {load.dropped}")

    print("\nRSS over time (MiB):")
    print(f"{'t (s)':>7} {'jessy-core':>11} {'jessy-api':>10}")
    for t, c, a in rss:
        fmt = lambda v: f"{v / 1024:.1f}" if v else "-"
        print(f"{t:7.0f} {fmt(c):>11} {fmt(a):>10}")

    print("\nRestarts:")
    for i, r in enumerate(restarts, 1):
        seen = [(t, o) for t, o in load.results if r["sigterm"] <= t < r["ready"] + 2 and o != "200"]
        first = f"{seen[0][0]:.2f}s {seen[0][1]}" if seen else "none"
        last = f"{seen[-1][0]:.2f}s {seen[-1][1]}" if seen else "none"
        print(f"restart {i}: SIGTERM at {r['sigterm']:.1f}s, exited after {r['exited'] - r['sigterm']:.2f}s, "
              f"ready after {r['ready'] - r['sigterm']:.2f}s; non-200 answers: {len(seen)} "
              f"(first {first}, last {last})")
    steady = [(t, o) for t, o in load.results if phase(t) == "steady" and o != "200"]
    if steady:
        shown = ", ".join(f"{t:.2f}s {o}" for t, o in steady[:10])
        print(f"non-200 outside the restarts: {len(steady)} ({shown}{', ...' if len(steady) > 10 else ''})")
    unexpected = [o for o in outcomes if o.isdigit() and int(o) not in EXPECTED]
    if unexpected:
        print(f"soak: unexpected statuses {unexpected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
