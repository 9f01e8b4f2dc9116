#!/usr/bin/env python3
"""jessy benchmark harness (python3 stdlib only). Run it through bench/run.sh.

What one run does, in order:
  1. builds the product under test -- by default the shipped binaries,
     static musl with mimalloc, made by scripts/build-binaries.sh (or taken
     from --ship-dir) -- and, beside it as variant "glibc", the native
     release build (cargo build --release --locked --features <as shipped>);
     the bare-axum reference (bench/reference-axum, own Cargo.lock) for glibc
     and for static musl; writes the image archives of the shipped binaries
     (scripts/build-images.sh --no-cargo --no-load); copies every executable
     into a private temp dir, so parallel builds in the shared target dir
     cannot swap a binary under the benchmark;
  2. load cases, interleaved: every round runs every case once (the order
     rotates each round), each case on freshly started processes: wait until
     ready, one pre-check request (must be 2xx), wrk warm-up, measured wrk
     run (wrk -t1 -cN with bench/wrk/report.lua), then VmHWM of every server
     process, then SIGTERM (SIGKILL after 5 s);
  2b. latency at a fixed offered rate: the same processes-per-case scheme,
     but oha -q R --latency-correction instead of wrk, R being --rate-fraction
     of the slowest closed-loop req/s of the group (core: health, query,
     query-2k; api: the same through the gateway). Closed-loop p99 at
     saturation follows throughput; this is the other view, latency at one
     load every member sustains. Skipped when oha is not installed;
  3. startup: spawn -> first 200 on the health URL (poll every 0.5 ms),
     median of N starts, and idle RSS 200 ms after that first 200, for the
     product and every variant;
  4. sizes (stripped binaries; the image archives' layers, uncompressed);
  5. divan microbenchmarks of the navigation engine (benches/navigation.rs);
  6. optional (--build-times): cold and incremental release build times;
  7. tables (medians, min..max spread), ratios and the budget (PASS/MISS
     with per-round ranges, for the product and beside it for every variant;
     a MISS does not fail the run), and JSON lines in bench/results/.

Exit status: 0 unless something did not work (a server that does not start,
a non-2xx or socket error under load, a build that fails): 1. Timings never
fail the run.

Only loopback (127.0.0.1) ports below 32768 are used; a port that already
answers is refused, so the harness never benchmarks a stranger. It stops
only the processes it started (by their process group).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LUA = BENCH / "wrk" / "report.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MIB = 1024 * 1024

SHORT_QUERY = "What is the meaning of life and existence?"
# Same sentence and construction as benches/navigation.rs (long_query).
SENTENCE = ("I feel anxious about the future of my family and friends, "
            "so I think about ethics, art and the meaning of life while I debug this code. ")

# Latency at a fixed offered rate: each group runs at RATE_FRACTION of the
# slowest member's closed-loop req/s (median, same run), so every member
# runs below its saturation and p99 compares latency, not throughput.
RATE_GROUPS = (("core-health", "core-query", "core-query-2k"),
               ("api-health", "api-query", "api-query-2k"))

# Budget (issue 6; images: issue 14). Ratios are measured within one run, on
# the product under test (by default the shipped static musl build).
BUDGET = {
    "core_vs_axum": 0.9,       # jessy-core /health req/s >= 0.9 x bare axum
    "gateway_vs_nginx": 1.0,   # jessy-api -> core >= 1.0 x nginx proxy -> core
    "idle_rss_mib": 8.0,       # per service
    "peak_rss_mib": 32.0,      # per service, 64 connections
    "startup_ms": 20.0,        # spawn -> first 200 on /health
    "query_p99_x": 2.0,        # /api/v1/query p99 <= 2 x /health p99
    "image_mb": 6.0,           # image layers, MB (10^6 bytes); deploy/images.json maxLayerBytes wins
}


def long_query(chars: int) -> str:
    out = []
    while sum(map(len, out)) < chars:
        out.append(SENTENCE)
    return "".join(out)[:chars]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- /proc ----

def proc_stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces; fields after the closing paren
    return raw[raw.rindex(")") + 2:].split()


def session_pids(sid: int) -> list[int]:
    """All processes whose session id is `sid` (a server and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = proc_stat_fields(int(entry))
        # after comm: state(0) ppid(1) pgrp(2) session(3)
        if f and int(f[3]) == sid:
            pids.append(int(entry))
    return sorted(pids)


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        f = proc_stat_fields(pid)
        if f:
            total += int(f[11]) + int(f[12])  # utime, stime
    return total


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]  # idle + iowait
    total = sum(vals)
    return total - idle, total


def busy_cores(interval: float) -> float:
    b0, _ = machine_busy_ticks()
    time.sleep(interval)
    b1, _ = machine_busy_ticks()
    return (b1 - b0) / CLK_TCK / interval


# ------------------------------------------------------------------ HTTP ----

def http_request(port: int, path: str, body: bytes | None = None,
                 timeout: float = 2.0) -> tuple[int, bytes] | None:
    """One HTTP/1.1 request on 127.0.0.1; None if the port refuses."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout, OSError):
        return None
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if body is None:
            req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        else:
            req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        s.sendall(req)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not c:
                break
            chunks.append(c)
        data = b"".join(chunks)
    except OSError:
        return None
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    if not m:
        return None
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(m.group(1)), payload


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------- processes ----

LIVE: dict[int, "Server"] = {}


def set_autogroup_nice(pid: int, nice: int) -> None:
    """With sched_autogroup, a plain nice does nothing against other sessions;
    the session's autogroup nice does (needs root for negative values)."""
    if nice == 0:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass


class Server:
    def __init__(self, role: str, cmd: list[str], env: dict[str, str], logdir: Path,
                 nice: int, tag: str):
        self.role = role
        self.logpath = logdir / f"{tag}-{role}.log"
        self.logfile = open(self.logpath, "ab")
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        LIVE[self.pid] = self
        set_autogroup_nice(self.pid, nice)

    def pids(self) -> list[int]:
        if self.proc.poll() is not None:
            return []
        return session_pids(self.pid) or [self.pid]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        # children left in the group (nginx workers exit with their master)
        for _ in range(50):
            if not session_pids(self.pid):
                break
            time.sleep(0.01)
        self.logfile.close()
        LIVE.pop(self.pid, None)

    def log_tail(self, n: int = 5) -> str:
        try:
            return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_ready(srv: Server, port: int, path: str, limit: float = 30.0,
               poll: float = 0.0005) -> float | None:
    """ms from spawn to the first 2xx on `path`; None on timeout/exit."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if srv.proc.poll() is not None:
            return None
        r = http_request(port, path, timeout=1.0)
        if r and 200 <= r[0] < 300:
            return (time.perf_counter() - srv.t_spawn) * 1000
        time.sleep(poll)
    return None


def stop_all() -> None:
    for srv in list(LIVE.values())[::-1]:
        srv.stop()


# ----------------------------------------------------------------- build ----

def cargo_env(target_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(target_dir)
    return env


SHIP_DESC = REPO / "deploy" / "build.json"
IMAGES_DESC = REPO / "deploy" / "images.json"


def ship_desc() -> dict:
    """deploy/build.json: features, target and rustflags of the build that ships."""
    d = json.loads(SHIP_DESC.read_text())
    d["linux"]["target"] = d["linux"]["target"].replace("{cpu}", platform.machine())
    return d


def elf_libc(path: Path) -> str:
    """'static' (no program interpreter: the static musl build) or the
    interpreter's libc ('glibc', 'musl (dynamic)')."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return "?"
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ptype, = struct.unpack("<I", f.read(4))
            if ptype == 3:  # PT_INTERP
                f.seek(phoff + i * phentsize + 8)
                off, = struct.unpack("<Q", f.read(8))
                f.seek(off)
                interp = f.read(64).split(b"\0")[0].decode(errors="replace")
                return "musl (dynamic)" if "musl" in interp else "glibc"
    return "static"


def cargo_exes(out: str) -> dict[str, Path]:
    exes = {}
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and "bin" in msg["target"]["kind"]:
            exes[msg["target"]["name"]] = Path(msg["executable"])
    return exes


def ship_bins(ship: Path) -> dict[str, Path]:
    """The executables of a build-binaries.sh tree (DIR/<name>/bin/<name>) or
    of a flat dir (DIR/<name>)."""
    out = {}
    for name in ("jessy-core", "jessy-api"):
        for cand in (ship / name / "bin" / name, ship / name):
            if cand.is_file():
                out[name] = cand
                break
    return out


def build_glibc(args, target_dir: Path) -> dict[str, Path]:
    """cargo build --release --locked --features <the shipped features> --bins:
    the native glibc build (system malloc)."""
    cmd = ["cargo", "build", "--release", "--locked", "--bins",
           "--message-format", "json-render-diagnostics"]
    if args.features:
        cmd += ["--features", args.features]
    log(f"bench: {' '.join(cmd[:5])}{' --features ' + args.features if args.features else ''}"
        f" (CARGO_TARGET_DIR={target_dir})")
    out = subprocess.run(cmd, cwd=REPO, env=cargo_env(target_dir), stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    exes = cargo_exes(out)
    for name in ("jessy-core", "jessy-api"):
        if name not in exes:
            raise SystemExit(f"bench: cargo did not report an executable for {name}")
    return {k: exes[k] for k in ("jessy-core", "jessy-api")}


def build_ship(args, target_dir: Path, ship: Path) -> dict[str, Path]:
    """scripts/build-binaries.sh --out SHIP: the static musl binaries the
    images hold (deploy/build.json: target, features, rustflags, cargo-auditable)."""
    log(f"bench: scripts/build-binaries.sh --out {ship} (CARGO_TARGET_DIR={target_dir})")
    subprocess.run(["bash", str(REPO / "scripts" / "build-binaries.sh"), "--out", str(ship)],
                   cwd=REPO, env=cargo_env(target_dir), check=True)
    return ship_bins(ship)


def build_reference(target_dir: Path, musl: bool) -> Path:
    """The bare-axum reference: the native glibc build, or (musl=True) a static
    musl build made like the shipped one (target and rustflags of
    deploy/build.json; mimalloc, as jessy's musl builds)."""
    ref_target = target_dir / "bench-reference-axum"
    manifest = BENCH / "reference-axum" / "Cargo.toml"
    cmd = ["cargo", "build", "--release", "--locked", "--manifest-path", str(manifest)]
    env = cargo_env(ref_target)
    if musl:
        d = ship_desc()["linux"]
        cmd += ["--target", d["target"]]
        env["CARGO_BUILD_RUSTFLAGS"] = d["rustflags"]
        cc_var = "CC_" + d["target"].replace("-", "_")
        env.setdefault(cc_var, "musl-gcc")
        exe = ref_target / d["target"] / "release" / "reference-axum"
    else:
        exe = ref_target / "release" / "reference-axum"
    log(f"bench: {' '.join(cmd[:4])} --manifest-path {manifest.relative_to(REPO)}"
        f"{' --target ' + ship_desc()['linux']['target'] if musl else ''} (CARGO_TARGET_DIR={ref_target})")
    subprocess.run(cmd, cwd=BENCH / "reference-axum", env=env, check=True, stdout=subprocess.DEVNULL)
    return exe


def reference_path(target_dir: Path, musl: bool) -> Path:
    ref_target = target_dir / "bench-reference-axum"
    if musl:
        return ref_target / ship_desc()["linux"]["target"] / "release" / "reference-axum"
    return ref_target / "release" / "reference-axum"


def build(args, target_dir: Path, bindir: Path) -> tuple[dict[str, Path], dict[str, dict[str, Path]]]:
    """Builds (or with --no-build finds) the product under test, the glibc
    build beside it and the references, and copies every executable into
    bindir (private copies: a parallel build cannot swap one mid-run).
    Returns (bins of the product + references, {variant: its jessy bins})."""
    found: dict[str, Path] = {}
    variants: dict[str, dict[str, Path]] = {}
    ship = Path(args.ship_dir).resolve() if args.ship_dir else target_dir / "ship"
    if args.product == "ship":
        if args.ship_dir or args.no_build:
            found.update(ship_bins(ship))
        else:
            found.update(build_ship(args, target_dir, ship))
        for name in ("jessy-core", "jessy-api"):
            if name not in found:
                raise SystemExit(f"bench: no {name} in {ship} (scripts/build-binaries.sh --out {ship})")
    if args.product == "glibc" or not args.no_glibc:
        if args.no_build:
            g = {n: target_dir / "release" / n for n in ("jessy-core", "jessy-api")}
        else:
            g = build_glibc(args, target_dir)
        if args.product == "glibc":
            found.update(g)
        else:
            variants["glibc"] = g
    refs = {"reference-axum": False}
    if not args.no_musl_ref:
        refs["reference-axum-musl"] = True
    for key, musl in refs.items():
        found[key] = reference_path(target_dir, musl) if args.no_build else build_reference(target_dir, musl)

    bins = {}
    for k, v in found.items():
        if not v.is_file():
            raise SystemExit(f"bench: {v} not found (build it, or drop --no-build)")
        bins[k] = bindir / k
        shutil.copy2(v, bins[k])
    out = {}
    for name, vb in variants.items():
        out[name] = {}
        for exe, src in vb.items():
            if not src.is_file():
                raise SystemExit(f"bench: {src} not found (build it, or drop --no-build)")
            out[name][exe] = bindir / f"{exe}@{name}"
            shutil.copy2(src, out[name][exe])
    return bins, out


# ----------------------------------------------------------------- nginx ----

def nginx_conf(tmp: Path, workers: int, port: int, upstream_port: int,
               master: bool = True) -> Path:
    """Without a master (bench/callgrind.py) the single worker is nginx's own
    process, so a tool wrapping the command sees the worker."""
    d = tmp / f"nginx-w{workers}"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    user = ""
    if os.geteuid() == 0 and master:
        # Run the workers as the current user (root here) instead of nobody.
        import grp
        import pwd
        pw = pwd.getpwuid(os.geteuid())
        user = f"user {pw.pw_name} {grp.getgrgid(pw.pw_gid).gr_name};\n"
    conf = d / "nginx.conf"
    conf.write_text(f"""# generated by bench/bench.py: reverse proxy in front of jessy-core
{user}worker_processes {workers};
daemon off;
master_process {"on" if master else "off"};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream jessy_core {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://jessy_core;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""")
    return conf


# ----------------------------------------------------------------- cases ----

class Ports:
    def __init__(self, base: int):
        self.core, self.api, self.ref, self.ngx1, self.ngx2 = range(base, base + 5)

    def all(self):
        return [self.core, self.api, self.ref, self.ngx1, self.ngx2]


def base_env() -> dict[str, str]:
    # A clean environment: nothing like OTEL_EXPORTER_OTLP_ENDPOINT leaks in.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}


def build_cases(args, bins: dict[str, Path], ports: Ports, tmp: Path, suffix: str = "") -> list[dict]:
    """The load cases. With `suffix` (a --variant), only the cases that run a
    jessy binary, named `<case>@<variant>`, using that variant's binaries."""
    def core(level="info", workers=None):
        env = base_env() | {"JESSY_HOST": "127.0.0.1", "JESSY_PORT": str(ports.core),
                            "RUST_LOG": level, "LOG_FORMAT": args.log_format}
        if workers:
            # WORKER_THREADS for jessy; TOKIO_WORKER_THREADS too, for --variant
            # binaries from before the thread-per-core server.
            env["WORKER_THREADS"] = env["TOKIO_WORKER_THREADS"] = str(workers)
        return {"role": "core", "cmd": [str(bins["jessy-core"])], "env": env,
                "port": ports.core, "ready": "/health"}

    def api(level="info", workers=None):
        env = base_env() | {"API_HOST": "127.0.0.1", "API_PORT": str(ports.api),
                            "RUST_SERVICE_URL": f"http://127.0.0.1:{ports.core}",
                            "RATE_LIMIT_ENABLED": "false",
                            "RUST_LOG": level, "LOG_FORMAT": args.log_format}
        if workers:
            env["WORKER_THREADS"] = env["TOKIO_WORKER_THREADS"] = str(workers)
        return {"role": "api", "cmd": [str(bins["jessy-api"])], "env": env,
                "port": ports.api, "ready": "/api/health"}

    def ref(workers=None, exe="reference-axum", middleware=None):
        env = base_env() | {"BIND": f"127.0.0.1:{ports.ref}"}
        if workers:
            env["TOKIO_WORKER_THREADS"] = str(workers)
        if middleware:
            env["REFERENCE_MIDDLEWARE"] = middleware
        return {"role": "axum", "cmd": [str(bins[exe])], "env": env,
                "port": ports.ref, "ready": "/health"}

    def nginx(workers):
        port = ports.ngx1 if workers == 1 else ports.ngx2
        conf = nginx_conf(tmp, workers, port, ports.core)
        return {"role": "nginx", "cmd": [args.nginx, "-p", str(conf.parent), "-c", str(conf),
                                         "-e", str(conf.parent / "error.log")],
                "env": base_env(), "port": port, "ready": "/health"}

    short = tmp / "query-short.json"
    short.write_text(json.dumps({"query": SHORT_QUERY}))
    q2k = tmp / "query-2k.json"
    q2k.write_text(json.dumps({"query": long_query(2000)}))

    C = []

    def case(name, what, procs, path, body=None, default=True):
        if suffix:
            if not any(p["role"] in ("core", "api") for p in procs):
                return
            name, what = f"{name}@{suffix}", f"{what} [{suffix}]"
        C.append({"name": name, "what": what, "procs": procs, "port": procs[-1]["port"],
                  "path": path, "body": str(body) if body else None, "default": default})

    case("axum-ref", "bare axum reference GET /health (glibc)", [ref()], "/health")
    case("axum-mw", "the same axum behind the standard (tower-http, metrics) equivalent of "
         "jessy's middleware GET /health (glibc)", [ref(middleware="standard")], "/health")
    if "reference-axum-musl" in bins:
        case("axum-ref-musl", "bare axum reference GET /health (static musl, mimalloc)",
             [ref(exe="reference-axum-musl")], "/health")
    case("core-health", "jessy-core GET /health", [core()], "/health")
    case("core-health-warn", "jessy-core GET /health, RUST_LOG=warn", [core("warn")], "/health")
    case("core-query", "jessy-core POST /api/v1/query (short)", [core()], "/api/v1/query", short)
    case("core-query-2k", "jessy-core POST /api/v1/query (2,000 chars)", [core()],
         "/api/v1/query", q2k)
    case("core-query-warn", "jessy-core POST /api/v1/query (short), RUST_LOG=warn",
         [core("warn")], "/api/v1/query", short)
    case("api-health", "jessy-api GET /api/v1/health -> core /health", [core(), api()],
         "/api/v1/health")
    case("api-health-warn", "jessy-api -> core, both RUST_LOG=warn",
         [core("warn"), api("warn")], "/api/v1/health")
    case("api-query", "jessy-api POST /api/v1/query (short) -> core", [core(), api()],
         "/api/v1/query", short)
    case("api-query-2k", "jessy-api POST /api/v1/query (2,000 chars) -> core",
         [core(), api()], "/api/v1/query", q2k)
    case("nginx1-proxy", "nginx (1 worker, keepalive) GET /health -> core", [core(), nginx(1)],
         "/health")
    case("nginx2-proxy", "nginx (2 workers, keepalive) GET /health -> core", [core(), nginx(2)],
         "/health")
    case("api-health-t1", "jessy-api -> core, 1 worker thread in both",
         [core(workers=1), api(workers=1)], "/api/v1/health")
    case("nginx1-proxy-t1", "nginx (1 worker) -> core with 1 worker thread",
         [core(workers=1), nginx(1)], "/health")
    # Not in the default set (--extra): the same-thread-count latency view.
    case("axum-ref-t1", "bare axum reference, TOKIO_WORKER_THREADS=1", [ref(workers=1)],
         "/health", default=False)
    case("core-health-t1", "jessy-core GET /health, WORKER_THREADS=1", [core(workers=1)],
         "/health", default=False)
    case("core-query-t1", "jessy-core POST /api/v1/query (short), WORKER_THREADS=1",
         [core(workers=1)], "/api/v1/query", short, default=False)
    case("api-query-t1", "jessy-api POST /api/v1/query (short) -> core, 1 worker each",
         [core(workers=1), api(workers=1)], "/api/v1/query", short, default=False)
    return C


# ------------------------------------------------------------------ load ----

def run_load_tool(cmd: list[str], env: dict | None, duration: int,
                  nice: int) -> tuple[str | None, float]:
    """Runs a load generator in its own session (and autogroup); returns its
    output (None if it overran the run by 30 s and was killed) and its CPU
    seconds."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True)
    set_autogroup_nice(p.pid, nice)
    try:
        out, _ = p.communicate(timeout=duration + 30)
    except BaseException as exc:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            return None, 0.0
        raise
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def run_wrk(args, url: str, body: str | None, duration: int, nice: int) -> tuple[dict | None, float, str]:
    """Runs wrk; returns (report, load-tool CPU seconds, raw stdout)."""
    env = dict(os.environ)
    env.pop("WRK_BODY_FILE", None)
    if body:
        env["WRK_BODY_FILE"] = body
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{duration}s", "--timeout", "5s",
           "-s", str(LUA), url]
    out, cpu = run_load_tool(cmd, env, duration, nice)
    if out is None:
        return None, cpu, ""
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[9:]), cpu, out
    return None, cpu, out


def run_oha(args, url: str, body: str | None, rate: float, duration: int,
            nice: int) -> tuple[dict | None, float, str]:
    """Runs oha at a fixed offered rate with latency correction (each latency
    counted from when its request was due, so a stall is not hidden by the
    requests it delayed); returns the report in run_wrk's shape."""
    cmd = [args.oha, "-z", f"{duration}s", "-q", f"{rate:.0f}", "-c", str(args.conns),
           "--latency-correction", "--no-tui", "--output-format", "json"]
    if body:
        cmd += ["-m", "POST", "-H", "Content-Type: application/json", "-D", body]
    cmd.append(url)
    out, cpu = run_load_tool(cmd, None, duration, nice)
    if out is None:
        return None, cpu, ""
    try:
        d = json.loads(out[out.index("{"):])
    except ValueError:
        return None, cpu, out
    codes = {int(k): v for k, v in d.get("statusCodeDistribution", {}).items()}
    # Requests still in flight when -z ends are cut off by oha itself: not an error.
    socket_errors = sum(v for k, v in d.get("errorDistribution", {}).items()
                        if "aborted due to deadline" not in k)
    pct = d["latencyPercentiles"]
    us = lambda seconds: round((seconds or 0) * 1e6)  # noqa: E731
    report = {
        "requests": sum(codes.values()),
        "duration_us": us(d["summary"]["total"]),
        "errors": {"connect": 0, "read": socket_errors, "write": 0, "timeout": 0,
                   "status": sum(v for k, v in codes.items() if k >= 400)},
        "latency_us": {"min": us(d["summary"]["fastest"]), "max": us(d["summary"]["slowest"]),
                       "p": {"50": us(pct["p50"]), "90": us(pct["p90"]), "99": us(pct["p99"]),
                             "99.9": us(pct["p99.9"])}},
    }
    return report, cpu, out


def wait_quiet(args) -> float:
    """Machine load (cores busy) just before a run; waits up to --quiet-wait s
    for it to drop below --quiet. Returns the last sample."""
    deadline = time.monotonic() + args.quiet_wait
    while True:
        busy = busy_cores(0.25)
        if busy <= args.quiet or time.monotonic() >= deadline:
            return busy
        time.sleep(0.25)


def run_case(args, case: dict, rnd: int, logdir: Path, rate: float | None = None) -> dict:
    """One measured run on fresh processes: wrk as fast as it can (closed loop), or,
    with `rate`, oha at that fixed offered rate (type "rate")."""
    row = {"type": "rate" if rate else "load", "name": case["name"], "round": rnd,
           "conns": args.conns, "threads": args.threads, "duration_s": args.duration, "ok": False}
    if rate:
        row["rate"] = rate
    row["pre_busy"] = round(wait_quiet(args), 2)
    servers: list[Server] = []
    try:
        for p in case["procs"]:
            if port_answers(p["port"]):
                row["error"] = f"port {p['port']} already answers: refusing to benchmark a stranger"
                return row
            srv = Server(p["role"], p["cmd"], p["env"], logdir, args.nice,
                         f"r{rnd}-{case['name']}")
            servers.append(srv)
            ready = wait_ready(srv, p["port"], p["ready"])
            if ready is None:
                why = (f"exited with status {srv.proc.returncode}" if srv.proc.poll() is not None
                       else f"did not answer 2xx on {p['ready']} within 30 s")
                row["error"] = f"{p['role']} {why}; log tail:\n{srv.log_tail()}"
                return row
            row[f"ready_ms_{p['role']}"] = round(ready, 2)
        body = Path(case["body"]).read_bytes() if case["body"] else None
        pre = http_request(case["port"], case["path"], body)
        if not pre or not (200 <= pre[0] < 300):
            row["error"] = f"pre-check {case['path']}: {pre[0] if pre else 'no answer'}"
            return row
        try:
            json.loads(pre[1])
        except ValueError:
            row["error"] = f"pre-check {case['path']}: body is not JSON: {pre[1][:200]!r}"
            return row
        url = f"http://127.0.0.1:{case['port']}{case['path']}"

        def load(duration):
            if rate:
                return run_oha(args, url, case["body"], rate, duration, args.nice)
            return run_wrk(args, url, case["body"], duration, args.nice)

        if args.warmup > 0:
            load(args.warmup)
        pids = [pid for s in servers for pid in s.pids()]
        t0 = cpu_ticks(pids)
        b0, _ = machine_busy_ticks()
        w0 = time.perf_counter()
        rep, load_cpu, raw = load(args.duration)
        wall = time.perf_counter() - w0
        b1, _ = machine_busy_ticks()
        server_cpu = (cpu_ticks(pids) - t0) / CLK_TCK
        for s in servers:
            hwm = sum(status_kb(pid, "VmHWM") or 0 for pid in s.pids())
            row[f"rss_peak_kb_{s.role}"] = hwm
            if s.proc.poll() is not None:
                row["error"] = f"{s.role} exited during the run (status {s.proc.returncode})"
                return row
        if rep is None:
            row["error"] = f"{'oha' if rate else 'wrk'} gave no report:\n{raw[-500:]}"
            return row
        dur = rep["duration_us"] / 1e6
        e = rep["errors"]
        lat = rep["latency_us"]
        row.update({
            "rps": round(rep["requests"] / dur, 1),
            "requests": rep["requests"],
            "p50_ms": lat["p"]["50"] / 1000, "p90_ms": lat["p"]["90"] / 1000,
            "p99_ms": lat["p"]["99"] / 1000, "p999_ms": lat["p"]["99.9"] / 1000,
            "max_ms": lat["max"] / 1000,
            "errors": e["connect"] + e["read"] + e["write"] + e["timeout"] + e["status"],
            "non2xx": e["status"], "socket_errors": {k: v for k, v in e.items() if k != "status"},
            "server_cpu": round(server_cpu / wall, 2), "load_cpu": round(load_cpu / wall, 2),
            "other_cpu": round(max(0.0, (b1 - b0) / CLK_TCK - server_cpu - load_cpu) / wall, 2),
        })
        if row["errors"]:
            row["error"] = f"{row['errors']} errors under load ({e})"
            return row
        row["ok"] = True
        return row
    finally:
        for s in servers[::-1]:
            s.stop()
        row["ts"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------- startup ----

def startup(args, name: str, proc: dict, n: int, logdir: Path, backend: dict | None) -> list[dict]:
    rows = []
    back = None
    try:
        if backend:
            back = Server(backend["role"], backend["cmd"], backend["env"], logdir, args.nice,
                          f"startup-{name}")
            if wait_ready(back, backend["port"], backend["ready"]) is None:
                return [{"type": "startup", "name": name, "ok": False,
                         "error": f"backend did not start:\n{back.log_tail()}"}]
        for i in range(n):
            if port_answers(proc["port"]):
                return rows + [{"type": "startup", "name": name, "ok": False,
                                "error": f"port {proc['port']} already answers"}]
            srv = Server(proc["role"], proc["cmd"], proc["env"], logdir, args.nice,
                         f"startup-{name}")
            try:
                ms = wait_ready(srv, proc["port"], proc["ready"], limit=10.0)
                if ms is None:
                    rows.append({"type": "startup", "name": name, "i": i, "ok": False,
                                 "error": f"no 2xx within 10 s:\n{srv.log_tail()}"})
                    continue
                rss_first = status_kb(srv.pid, "VmRSS")
                time.sleep(0.2)
                rss_idle = status_kb(srv.pid, "VmRSS")
                threads = len(os.listdir(f"/proc/{srv.pid}/task"))
                rows.append({"type": "startup", "name": name, "i": i, "ok": True,
                             "ready_ms": round(ms, 3), "rss_first_kb": rss_first,
                             "rss_idle_kb": rss_idle, "threads": threads})
            finally:
                srv.stop()
    finally:
        if back:
            back.stop()
    return rows


# ------------------------------------------------------------ size/build ----

def image_sizes() -> dict[str, dict]:
    """Per release image (deploy/images.json): the layers of its archive
    target/images/<name>.tar (scripts/build-images.sh, or the flake's), summed
    uncompressed -- what `docker image ls` shows once loaded -- and, when the
    image loaded in Docker is that archive's (same config digest), Docker's size."""
    import gzip
    import tarfile
    spec = json.loads(IMAGES_DESC.read_text())
    out = {}
    docker = shutil.which("docker")
    for name, img in spec["images"].items():
        if name == "jessy-test":
            continue
        res = {"limit": img.get("maxLayerBytes"), "layers": None, "archive": None, "docker": None,
               "config": None}
        archive = REPO / "target" / "images" / f"{name}.tar"
        if archive.is_file():
            res["archive"] = archive.stat().st_size
            res["mtime"] = dt.datetime.fromtimestamp(archive.stat().st_mtime, dt.timezone.utc).strftime("%H:%M UTC")
            with tarfile.open(archive) as t:
                manifest = json.load(t.extractfile("manifest.json"))[0]
                res["config"] = Path(manifest["Config"]).name.removesuffix(".json")
                total = content = 0
                for layer in manifest["Layers"]:
                    f = t.extractfile(layer)
                    head = f.read(2)
                    f.seek(0)
                    if head == b"\x1f\x8b":
                        f = gzip.open(f)
                        size = 0
                        while chunk := f.read(1 << 20):
                            size += len(chunk)
                        total += size
                        f.seek(0)
                    else:
                        total += t.getmember(layer).size
                    # the files' bytes (what `docker image ls` adds up), without tar headers
                    with tarfile.open(fileobj=f) as lt:
                        content += sum(m.size for m in lt.getmembers() if m.isfile())
                res["layers"], res["content"] = total, content
        if docker:
            r = subprocess.run([docker, "image", "inspect", "-f", "{{.Id}} {{.Size}}", f"{name}:{spec['tag']}"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and len(r.stdout.split()) == 2:
                iid, size = r.stdout.split()
                res["docker_id"], res["docker_size"] = iid, int(size)
                if res["config"] and iid.endswith(res["config"]):
                    res["docker"] = int(size)
        out[name] = res
    return out


def build_times(args) -> dict:
    """Cold release build in a fresh target dir under /tmp, then one touched
    source file and the incremental rebuild in the same dir."""
    cold_dir = Path(tempfile.mkdtemp(prefix="jessy-cold-build.", dir="/tmp"))
    touched = REPO / "src" / "lib.rs"
    cmd = ["cargo", "build", "--release", "--locked", "--bins"]
    if args.features:
        cmd += ["--features", args.features]
    res = {"type": "build", "features": args.features or "default", "cmd": " ".join(cmd),
           "touched": str(touched.relative_to(REPO))}
    try:
        log(f"bench: cold build ({' '.join(cmd)}) in {cold_dir} ...")
        t = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=cargo_env(cold_dir), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res["cold_s"] = round(time.perf_counter() - t, 1)
        # Touch (mtime only; content untouched), rebuild, then put the old
        # mtime back if nobody changed the file meanwhile, so the shared
        # target dir does not rebuild because of us.
        st = touched.stat()
        before = touched.read_bytes()
        os.utime(touched)
        mine = touched.stat().st_mtime_ns
        t = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=cargo_env(cold_dir), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res["incremental_s"] = round(time.perf_counter() - t, 1)
        if touched.stat().st_mtime_ns == mine and touched.read_bytes() == before:
            os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns))
        res["ok"] = True
    except subprocess.CalledProcessError as err:
        res["ok"] = False
        res["error"] = str(err)
    finally:
        shutil.rmtree(cold_dir, ignore_errors=True)
    return res


# ---------------------------------------------------------------- divan -----

UNITS = {"ps": 1e-6, "ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def micro(args, target_dir: Path) -> tuple[list[dict], str, bool]:
    cmd = ["cargo", "bench", "--locked", "--bench", "navigation"]
    if args.features:
        cmd += ["--features", args.features]
    cmd += ["--", "--color", "never"]
    if args.quick:
        cmd += ["--sample-count", "20"]
    log(f"bench: {' '.join(cmd)}")
    try:
        r = subprocess.run(cmd, cwd=REPO, env=cargo_env(target_dir), capture_output=True,
                           text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return [], "timed out", False
    rows = []
    pat = re.compile(r"^[├╰]─ (\S+)\s+([\d.]+ \S+)\s+│\s+([\d.]+ \S+)\s+│\s+([\d.]+ \S+)"
                     r"\s+│\s+([\d.]+ \S+)\s+│\s+(\d+)\s+│\s+(\d+)")

    def us(v: str) -> float:
        num, unit = v.split()
        return float(num) * UNITS[unit]

    for line in r.stdout.splitlines():
        m = pat.match(line)
        if m:
            rows.append({"type": "micro", "name": m.group(1), "fastest_us": us(m.group(2)),
                         "slowest_us": us(m.group(3)), "median_us": us(m.group(4)),
                         "mean_us": us(m.group(5)), "samples": int(m.group(6)),
                         "iters": int(m.group(7))})
    return rows, r.stdout + ("\n" + r.stderr[-2000:] if r.returncode else ""), r.returncode == 0


# --------------------------------------------------------------- reports ----

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0, unit=""):
    if x is None:
        return "n/a"
    if nd == 0:
        return f"{x:,.0f}{unit}"
    return f"{x:,.{nd}f}{unit}"


def summarize_load(cases: list[dict], rows: list[dict], kind: str = "load") -> dict:
    """Per case, over the rounds: medians and spread of the rows of `kind`
    ("load": wrk, closed loop; "rate": oha at a fixed offered rate)."""
    by = {}
    for c in cases:
        rs = [r for r in rows if r["type"] == kind and r["name"] == c["name"] and r.get("ok")]
        if not rs:
            continue
        roles = [p["role"] for p in c["procs"]]
        rps = [r["rps"] for r in rs]
        by[c["name"]] = {
            "what": c["what"], "n": len(rs), "roles": roles,
            "rps": med(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50": med([r["p50_ms"] for r in rs]), "p99": med([r["p99_ms"] for r in rs]),
            "p999": med([r.get("p999_ms", 0.0) for r in rs]), "rate": med([r.get("rate", 0.0) for r in rs]),
            "errors": sum(r["errors"] for r in rs),
            "rss": {role: max(r.get(f"rss_peak_kb_{role}", 0) for r in rs) / 1024 for role in roles},
            "server_cpu": med([r["server_cpu"] for r in rs]),
            "load_cpu": med([r["load_cpu"] for r in rs]),
            "other_cpu": med([r["other_cpu"] for r in rs]),
            "pre_busy": med([r["pre_busy"] for r in rs]),
            "per_round": {r["round"]: r for r in rs},
        }
    return by


def ratio(by, a, b, key="rps"):
    """(ratio of medians, min..max of per-round ratios)."""
    if a not in by or b not in by or not by[b][key]:
        return None, None, None
    r = by[a][key] / by[b][key]
    per = [by[a]["per_round"][k][{"rps": "rps", "p99": "p99_ms"}[key]] /
           by[b]["per_round"][k][{"rps": "rps", "p99": "p99_ms"}[key]]
           for k in by[a]["per_round"] if k in by[b]["per_round"]]
    return r, (min(per) if per else None), (max(per) if per else None)


def build_label(meta, name: str) -> str:
    """Which build a service or case name is, and its libc/allocator."""
    if name.startswith(("axum-ref", "axum-mw")):
        return "static musl, mimalloc" if name == "axum-ref-musl" else "glibc, glibc malloc"
    v = name.partition("@")[2]
    libc = meta["libc"].get(f"@{v}" if v else "jessy-core", "?")
    kind = {"static": "static musl", "glibc": "glibc"}.get(libc, libc)
    if v == "" and meta["product"] == "ship":
        return "shipped: static musl, mimalloc" if libc == "static" else f"shipped: {kind}"
    if libc == "glibc":
        return "glibc, glibc malloc"
    return kind + ("" if v == "" else ", allocator as built")


def render(meta, cases, by, by_rate, starts, sizes, images, micro_rows, build, failures) -> tuple[str, list[dict]]:
    L = []
    L.append(f"## jessy benchmark — {meta['date']}")
    L.append("")
    L.append(f"Machine: {meta['cpu']} ({meta['nproc']} CPUs), {meta['kernel']}, {meta['rustc']}, "
             f"{meta['wrk']}, {meta['nginx']}. Load generator and servers share the same cores.")
    L.append(f"Conditions: {meta['rounds']} interleaved round(s) × {len(by)} cases, "
             f"wrk -t{meta['threads']} -c{meta['conns']}, {meta['duration']} s measured after "
             f"{meta['warmup']} s warm-up, fresh processes per case and round; LOG_FORMAT="
             f"{meta['log_format']}, RUST_LOG=info unless noted, RATE_LIMIT_ENABLED=false; "
             f"glibc build features: {meta['features']}; autogroup nice {meta['nice']}; git {meta['git']}; "
             f"load average at start {' '.join(meta['loadavg'])}, at end {' '.join(meta.get('loadavg_end', ['?']))}.")
    L.append("Builds: plain case names = " + build_label(meta, "core-health")
             + ("" if not meta["variants"] else "; " + "; ".join(
                 f"`@{v}` = {build_label(meta, 'x@' + v)}" for v in meta["variants"]))
             + "; `axum-ref` = bare axum, " + build_label(meta, "axum-ref")
             + "; `axum-mw` = the same binary with REFERENCE_MIDDLEWARE=standard (tower-http request id, "
               "trace, panic catching, timeout, body limit; `metrics` counter, histogram and gauge)"
             + ("; `axum-ref-musl` = bare axum, static musl, mimalloc" if "reference-axum-musl" in meta["sizes"] else "")
             + ". nginx: Debian's (glibc).")
    L.append(f"Noise: machine load before runs (cores busy) median {fmt(meta['pre_busy_med'], 2)}, "
             f"max {fmt(meta['pre_busy_max'], 2)}; CPU used by other processes during runs "
             f"median {fmt(meta['other_cpu_med'], 2)}, max {fmt(meta['other_cpu_max'], 2)} cores "
             f"(upper bound, includes loopback softirq).")
    L.append("")
    L.append("### Load (medians; req/s spread = min..max over rounds)")
    L.append("")
    L.append("| case | what | req/s | spread | p50 ms | p99 ms | errors | peak RSS MiB | server CPU | other CPU |")
    L.append("|---|---|---:|---|---:|---:|---:|---|---:|---:|")
    for c in cases:
        s = by.get(c["name"])
        if not s:
            L.append(f"| {c['name']} | {c['what']} | FAILED | | | | | | | |")
            continue
        spread = f"{s['rps_min']:,.0f}..{s['rps_max']:,.0f} (±{(s['rps_max'] - s['rps_min']) / 2 / s['rps'] * 100:.0f} %)"
        rss = " + ".join(f"{role} {v:.1f}" for role, v in s["rss"].items())
        L.append(f"| {c['name']} | {c['what']} | {s['rps']:,.0f} | {spread} | {s['p50']:.3f} | "
                 f"{s['p99']:.2f} | {s['errors']} | {rss} | {s['server_cpu']:.2f} | {s['other_cpu']:.2f} |")
    L.append("")

    L.append("### Ratios (same run; ratio of medians, per-round min..max)")
    L.append("")
    L.append("| ratio | value | per round |")
    L.append("|---|---:|---|")
    ratio_defs = [
        ("core-health / axum-ref (req/s)", "core-health", "axum-ref", "rps"),
        ("core-health / axum-mw (req/s): jessy's middleware against the standard one", "core-health", "axum-mw", "rps"),
        ("axum-mw / axum-ref (req/s): what the standard middleware costs axum", "axum-mw", "axum-ref", "rps"),
        ("core-health-warn / axum-ref (req/s)", "core-health-warn", "axum-ref", "rps"),
        ("core-health-warn / core-health (req/s): INFO span cost (/health itself logs at DEBUG)", "core-health-warn", "core-health", "rps"),
        ("core-query-warn / core-query (req/s): INFO access log line + span", "core-query-warn", "core-query", "rps"),
        ("api-health / nginx1-proxy (req/s)", "api-health", "nginx1-proxy", "rps"),
        ("api-health / nginx2-proxy (req/s)", "api-health", "nginx2-proxy", "rps"),
        ("api-health-warn / nginx1-proxy (req/s)", "api-health-warn", "nginx1-proxy", "rps"),
        ("api-health-warn / api-health (req/s): INFO access log line + span", "api-health-warn", "api-health", "rps"),
        ("api-health-t1 / nginx1-proxy-t1 (req/s)", "api-health-t1", "nginx1-proxy-t1", "rps"),
        ("api-health / core-health (req/s): cost of the hop", "api-health", "core-health", "rps"),
        ("core-query p99 / core-health p99", "core-query", "core-health", "p99"),
        ("core-query-2k p99 / core-health p99", "core-query-2k", "core-health", "p99"),
        ("api-query p99 / api-health p99", "api-query", "api-health", "p99"),
        ("api-query-2k p99 / api-health p99", "api-query-2k", "api-health", "p99"),
        ("core-query / core-health (req/s)", "core-query", "core-health", "rps"),
        ("core-query-2k / core-health (req/s)", "core-query-2k", "core-health", "rps"),
        ("core-health-t1 / axum-ref-t1 (req/s)", "core-health-t1", "axum-ref-t1", "rps"),
    ]
    for c in cases:
        if "@" in c["name"]:
            base, variant = c["name"].split("@", 1)
            ratio_defs.append((f"{c['name']} / {base} (req/s)", c["name"], base, "rps"))
            ratio_defs.append((f"{c['name']} p99 / {base} p99", c["name"], base, "p99"))
            if base == "core-health":
                ratio_defs.append((f"{c['name']} / axum-ref (req/s)", c["name"], "axum-ref", "rps"))
            if base == "api-health":
                ratio_defs.append((f"{c['name']} / nginx1-proxy@{variant} (req/s)", c["name"],
                                   f"nginx1-proxy@{variant}", "rps"))
    ratios = {}
    for label, a, b, key in ratio_defs:
        r, lo, hi = ratio(by, a, b, key)
        ratios[(a, b, key)] = r
        if r is not None:
            L.append(f"| {label} | {r:.2f} | {lo:.2f}..{hi:.2f} |")
    L.append("")

    for vname in meta["variants"]:
        base_label = "shipped" if meta["product"] == "ship" else meta["product"]
        L.append(f"### {base_label} vs @{vname} ({build_label(meta, 'x@' + vname)}), same run")
        L.append("")
        L.append(f"| case | {base_label} req/s | @{vname} req/s | @{vname} / {base_label} (per round) | "
                 f"p99 ms {base_label} / @{vname} | peak RSS MiB {base_label} | peak RSS MiB @{vname} |")
        L.append("|---|---:|---:|---|---|---|---|")
        for c in cases:
            if "@" in c["name"] or f"{c['name']}@{vname}" not in by or c["name"] not in by:
                continue
            a_, b_ = by[c["name"]], by[f"{c['name']}@{vname}"]
            r, lo, hi = ratio(by, f"{c['name']}@{vname}", c["name"], "rps")
            rss = lambda s_: " + ".join(f"{role} {x:.1f}" for role, x in s_["rss"].items() if role != "nginx")  # noqa: E731
            L.append(f"| {c['name']} | {a_['rps']:,.0f} | {b_['rps']:,.0f} | {r:.2f} ({lo:.2f}..{hi:.2f}) | "
                     f"{a_['p99']:.2f} / {b_['p99']:.2f} | {rss(a_)} | {rss(b_)} |")
        L.append("")

    rate_ratios = {}
    if by_rate:
        L.append(f"### Latency at a fixed offered rate ({meta['oha']}, -c{meta['conns']}, "
                 "--latency-correction; medians over rounds)")
        L.append("")
        L.append("Each group runs at one offered rate, a fraction of its slowest member's "
                 "closed-loop req/s above, so no member is saturated; a request's latency counts "
                 "from when it was due. Reported beside the budget, which uses the wrk run.")
        L.append("")
        L.append("| case | offered req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in cases:
            s = by_rate.get(c["name"])
            if s:
                L.append(f"| {c['name']} | {s['rate']:,.0f} | {s['rps']:,.0f} | {s['p50']:.3f} | "
                         f"{s['p99']:.2f} | {s['p999']:.2f} | {s['errors']} | {s['server_cpu']:.2f} |")
        L.append("")
        L.append("| ratio at the same offered rate | value | per round |")
        L.append("|---|---:|---|")
        for group in RATE_GROUPS:
            base = group[0]
            for a in group[1:]:
                r, lo, hi = ratio(by_rate, a, base, "p99")
                rate_ratios[(a, base)] = r
                if r is not None:
                    L.append(f"| {a} p99 / {base} p99 | {r:.2f} | {lo:.2f}..{hi:.2f} |")
        L.append("")

    L.append("### Startup, idle memory, sizes")
    L.append("")
    L.append(f"| service | build | spawn → first 200 ms (median of {meta['starts']}; min..max) | idle RSS MiB (median; min..max) | threads | stripped binary |")
    L.append("|---|---|---|---|---:|---:|")
    st = {}
    services = []
    for v in [""] + [f"@{n}" for n in meta["variants"]]:
        services += [("jessy-core" + v, "jessy-core" + v), ("jessy-api" + v, "jessy-api" + v)]
    services += [("axum-ref", "reference-axum"), ("axum-ref-musl", "reference-axum-musl")]
    for name, bin_name in services:
        rs = [r for r in starts if r["name"] == name and r.get("ok")]
        if bin_name not in sizes:
            continue
        what = build_label(meta, name)
        if not rs:
            L.append(f"| {name} | {what} | FAILED | | | {fmt(sizes.get(bin_name))} B |")
            continue
        ms = [r["ready_ms"] for r in rs]
        idle = [r["rss_idle_kb"] / 1024 for r in rs]
        st[name] = {"ready_ms": med(ms), "ready_lo": min(ms), "ready_hi": max(ms),
                    "rss_idle_mib": med(idle), "rss_lo": min(idle), "rss_hi": max(idle),
                    "threads": med([r["threads"] for r in rs])}
        L.append(f"| {name} | {what} | {med(ms):.2f} ({min(ms):.2f}..{max(ms):.2f}) | "
                 f"{st[name]['rss_idle_mib']:.1f} ({min(idle):.1f}..{max(idle):.1f}) | {st[name]['threads']:.0f} | "
                 f"{sizes.get(bin_name, 0):,} B ({sizes.get(bin_name, 0) / MIB:.2f} MiB) |")
    L.append("")
    L.append("Images (deploy/images.json; the layer tars of `target/images/<name>.tar` summed uncompressed, "
             "as check-archive.sh counts them against maxLayerBytes; Docker counts the files' bytes; MB = 10^6 bytes):")
    L.append("")
    L.append("| image | layers, uncompressed (the budget's) | files in them | archive file | docker image ls | limit (maxLayerBytes) |")
    L.append("|---|---:|---:|---:|---|---:|")
    for name, im in images.items():
        if im["layers"] is None:
            L.append(f"| {name} | not built | | | | {fmt((im['limit'] or 0) / 1e6, 1)} MB |")
            continue
        dock = (f"{im['docker'] / 1e6:.2f} MB" if im.get("docker") else
                (f"another build is loaded ({im['docker_id'].removeprefix('sha256:')[:12]}, "
                 f"{im['docker_size'] / 1e6:.2f} MB)" if im.get("docker_id") else "not loaded"))
        L.append(f"| {name} | {im['layers']:,} B ({im['layers'] / 1e6:.2f} MB) | {im['content'] / 1e6:.2f} MB | "
                 f"{im['archive'] / 1e6:.2f} MB (written {im.get('mtime', '?')}) | {dock} | "
                 f"{fmt((im['limit'] or 0) / 1e6, 1)} MB |")
    L.append("")
    if micro_rows:
        L.append("### Navigation engine (divan, `cargo bench --bench navigation`)")
        L.append("")
        L.append("| bench | median | fastest | mean | samples × iters |")
        L.append("|---|---:|---:|---:|---|")
        for m in micro_rows:
            L.append(f"| {m['name']} | {m['median_us']:.2f} µs | {m['fastest_us']:.2f} µs | "
                     f"{m['mean_us']:.2f} µs | {m['samples']} × {m['iters']} |")
        L.append("")
    if build:
        L.append("### Release build time")
        L.append("")
        if build.get("ok"):
            L.append(f"`{build['cmd']}`: cold (fresh CARGO_TARGET_DIR under /tmp, crates already "
                     f"downloaded) {build['cold_s']:.0f} s; incremental after touching "
                     f"`{build['touched']}` {build['incremental_s']:.0f} s.")
        else:
            L.append(f"build failed: {build.get('error')}")
        L.append("")

    # Budget, per build: the product (plain case names) and every variant
    # (<case>@NAME). The references are the same processes for all of them;
    # the nginx cases run each build's own jessy-core.
    builds = [""] + [f"@{n}" for n in meta["variants"]]
    B = []
    rows_by_what: dict[str, dict] = {}

    def line(key, what, limit, v, value, lo_hi, passed, detail=""):
        row = {"type": "budget", "build": v or "product", "what": what, "value": value,
               "range": lo_hi, "limit": limit,
               "result": "n/a" if passed is None else ("PASS" if passed else "MISS"),
               "detail": detail}
        B.append(row)
        rows_by_what.setdefault(key, {"what": what, "limit": limit, "detail": detail})[v] = row

    def rng(lo, hi, nd=2, unit="×"):
        return "" if lo is None else f"{lo:.{nd}f}..{hi:.{nd}f}{unit}"

    for v in builds:
        for key, what, a, b_, lim, ge in (
                ("core", "jessy-core /health req/s ≥ 0.9× bare axum (glibc reference)", "core-health", "axum-ref",
                 BUDGET["core_vs_axum"], True),
                ("gw1", "gateway path ≥ 1.0× nginx proxy (1 worker) → same core", "api-health", "nginx1-proxy",
                 BUDGET["gateway_vs_nginx"], True),
                ("gw2", "gateway path ≥ 1.0× nginx proxy (2 workers) → same core", "api-health", "nginx2-proxy",
                 BUDGET["gateway_vs_nginx"], True)):
            bb = b_ if b_ == "axum-ref" else b_ + v
            r, lo, hi = ratio(by, a + v, bb, "rps")
            if r is None and key == "gw2":
                continue
            line(key, what, f"{'≥' if ge else '≤'} {lim:.2f}×", v, None if r is None else f"{r:.2f}×",
                 rng(lo, hi), None if r is None else r >= lim, f"{a}{v} / {bb}")
        for name in ("jessy-core", "jessy-api"):
            s_ = st.get(name + v, {})
            x = s_.get("rss_idle_mib")
            line(f"idle-{name}", f"idle RSS {name} ≤ 8 MiB", "≤ 8 MiB", v,
                 None if x is None else f"{x:.1f} MiB",
                 rng(s_.get("rss_lo"), s_.get("rss_hi"), 1, " MiB"),
                 None if x is None else x <= BUDGET["idle_rss_mib"],
                 "VmRSS 200 ms after the first 200, median (range over starts)")
        for role, name in (("core", "jessy-core"), ("api", "jessy-api")):
            mine = {n: s_ for n, s_ in by.items()
                    if role in s_["rss"] and (n.endswith(v) if v else "@" not in n)}
            peaks = [(s_["rss"][role], n) for n, s_ in mine.items()]
            if not peaks:
                continue
            x, where = max(peaks)
            per_round = {}
            for s_ in mine.values():
                for rnd, r_ in s_["per_round"].items():
                    per_round[rnd] = max(per_round.get(rnd, 0), r_.get(f"rss_peak_kb_{role}", 0) / 1024)
            line(f"peak-{name}", f"peak RSS {name} under {meta['conns']} connections ≤ 32 MiB", "≤ 32 MiB", v,
                 f"{x:.1f} MiB", rng(min(per_round.values()), max(per_round.values()), 1, " MiB"),
                 x <= BUDGET["peak_rss_mib"],
                 f"max VmHWM over all cases ({where}); range: per-round maxima")
        for name in ("jessy-core", "jessy-api"):
            s_ = st.get(name + v, {})
            x = s_.get("ready_ms")
            line(f"start-{name}", f"start → healthy {name} ≤ 20 ms", "≤ 20 ms", v,
                 None if x is None else f"{x:.2f} ms", rng(s_.get("ready_lo"), s_.get("ready_hi"), 2, " ms"),
                 None if x is None else x <= BUDGET["startup_ms"], f"median of {meta['starts']} (range)")
        for a, b_ in (("core-query", "core-health"), ("core-query-2k", "core-health"),
                      ("api-query", "api-health"), ("api-query-2k", "api-health")):
            r, lo, hi = ratio(by, a + v, b_ + v, "p99")
            line(f"{a}-p99", f"{a} p99 ≤ 2× {b_} p99 under load", "≤ 2.00×", v, None if r is None else
                 f"{r:.2f}× ({by[a + v]['p99']:.2f} / {by[b_ + v]['p99']:.2f} ms)", rng(lo, hi),
                 None if r is None else r <= BUDGET["query_p99_x"], "wrk, closed loop, saturated")
    if meta["product"] == "ship":
        for name, im in images.items():
            lim = im["limit"] or BUDGET["image_mb"] * 1e6
            x = im["layers"]
            line(f"image-{name}", f"image {name} ≤ {lim / 1e6:g} MB", f"≤ {lim / 1e6:g} MB", "",
                 "not built" if x is None else f"{x / 1e6:.2f} MB", "",
                 None if x is None else x <= lim, "layers of target/images/<name>.tar, uncompressed")

    cols = ["shipped" if meta["product"] == "ship" else meta["product"]] + meta["variants"]
    L.append("### Budget (MISS does not fail the run)")
    L.append("")
    L.append("Each build's own cases (`<case>@NAME` for a variant); value = ratio of medians "
             "(or median), range = per round (ratios) or over starts / rounds. The bare-axum "
             "reference of the first line is the glibc build for every column.")
    L.append("")
    L.append("| budget | limit | " + " | ".join(f"{c}: measured | {c}: per-round range | {c}" for c in cols) + " |")
    L.append("|---|---|" + "---:|---|---|" * len(cols))
    for key, d in rows_by_what.items():
        cells = []
        for v in builds:
            r_ = d.get(v)
            cells.append("— | | —" if r_ is None else f"{r_['value'] or 'n/a'} | {r_['range']} | {r_['result']}")
        L.append(f"| {d['what']} | {d['limit']} | " + " | ".join(cells) + " |")
    L.append("")
    # Not a budget line: the same ratio against a static musl (mimalloc) axum.
    info = []
    for v in builds:
        r, lo, hi = ratio(by, "core-health" + v, "axum-ref-musl", "rps")
        if r is not None:
            info.append(f"core-health{v} / axum-ref-musl {r:.2f}× ({lo:.2f}..{hi:.2f})")
    r, lo, hi = ratio(by, "axum-ref-musl", "axum-ref", "rps")
    if r is not None:
        info.append(f"axum-ref-musl / axum-ref {r:.2f}× ({lo:.2f}..{hi:.2f})")
    if info:
        L.append("Against the static musl (mimalloc) bare axum instead (information, not a budget line): "
                 + "; ".join(info) + ".")
        L.append("")
    if failures:
        L.append("### Failures")
        L.append("")
        for f in failures:
            L.append(f"- {f}")
        L.append("")
    return "\n".join(L), B


# ------------------------------------------------------------------ main ----

def tool_version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round × 2 s, 1 s warm-up, 5 starts")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, default=None, help="measured seconds per case (default 5, max 60)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up seconds per case (default 1)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--starts", type=int, default=None, help="starts per service for startup (default 20)")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--extra", action="store_true", help="also run the *-t1 latency cases not in the default set")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                    help="also run the jessy cases with DIR/jessy-core and DIR/jessy-api, named <case>@NAME (A/B a change)")
    ap.add_argument("--product", default="ship", choices=["ship", "glibc"],
                    help="what the plain case names and the budget measure: 'ship' (default), the static "
                         "musl binaries of scripts/build-binaries.sh, what the images hold; 'glibc', "
                         "the native cargo build --release")
    ap.add_argument("--ship-dir", default="", metavar="DIR",
                    help="take the shipped binaries from DIR (build-binaries.sh --out DIR) instead of building them")
    ap.add_argument("--no-glibc", action="store_true",
                    help="do not run the native glibc build beside the shipped one (variant 'glibc')")
    ap.add_argument("--no-musl-ref", action="store_true",
                    help="do not build and run the static musl bare-axum reference (case axum-ref-musl)")
    ap.add_argument("--no-images", action="store_true",
                    help="do not write the image archives (scripts/build-images.sh --no-cargo --no-load)")
    ap.add_argument("--features", default=None,
                    help="cargo features of the glibc build (default: those of deploy/build.json, as shipped)")
    ap.add_argument("--log-format", default="json", choices=["json", "pretty"], help="LOG_FORMAT (default json, as compose)")
    ap.add_argument("--build-times", action="store_true", help="also time a cold and an incremental release build (minutes)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in the target dir")
    ap.add_argument("--no-micro", action="store_true", help="skip the divan microbenchmarks")
    ap.add_argument("--no-load", action="store_true", help="skip the load cases")
    ap.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                    help="autogroup nice of the servers and wrk (default -10 as root, else 0)")
    ap.add_argument("--quiet", type=float, default=0.3, help="wait before each run until fewer cores than this are busy ...")
    ap.add_argument("--quiet-wait", type=float, default=1.0, help="... but at most this many seconds (default 1)")
    ap.add_argument("--port-base", type=int, default=24180, help="5 consecutive loopback ports from here (default 24180)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--oha", default=shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha"),
                    help="oha, for the fixed-rate latency cases (cargo install oha --locked)")
    ap.add_argument("--rate-fraction", type=float, default=0.5,
                    help="fixed-rate cases run at this fraction of the group's slowest req/s (default 0.5)")
    ap.add_argument("--no-rate", action="store_true", help="skip the fixed-rate latency cases (oha)")
    ap.add_argument("--out", default=str(BENCH / "results"), help="results directory (JSON lines + Markdown)")
    args = ap.parse_args()

    if args.features is None:
        args.features = ",".join(ship_desc()["features"])
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = min(args.duration or (2 if args.quick else 5), 60)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.starts = args.starts or (5 if args.quick else 20)
    if not 1024 <= args.port_base <= 32768 - 5:
        ap.error("--port-base: use loopback ports between 1024 and 32763 (below the ephemeral range)")

    for tool in ("wrk", "cargo"):
        if not shutil.which(tool):
            log(f"bench: '{tool}' not found (Debian: apt-get install -y wrk nginx hyperfine)")
            return 1
    if not Path(args.nginx).exists():
        log("bench: nginx not found (Debian: apt-get install -y nginx)")
        return 1
    if not args.no_rate and not args.no_load and not Path(args.oha).exists():
        log("bench: oha not found: the fixed-rate latency cases are skipped "
            "(cargo install oha --locked, about 5 min, adds them)")
        args.no_rate = True
    if not 0 < args.rate_fraction < 1:
        ap.error("--rate-fraction: between 0 and 1")

    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="jessy-bench."))
    logdir = tmp / "logs"
    logdir.mkdir()
    bindir = tmp / "bin"
    bindir.mkdir()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    jsonl = outdir / f"{stamp}.jsonl"
    mdfile = outdir / f"{stamp}.md"
    failures: list[str] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    rows: list[dict] = []
    out = open(jsonl, "a")

    def emit(row: dict) -> None:
        rows.append(row)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()

    try:
        # 1. build: the product (default: the shipped static musl binaries),
        # the glibc build beside it as variant "glibc", the references.
        bins, variants = build(args, target_dir, bindir)
        # --variant NAME=DIR: the same product cases with DIR's jessy-core and
        # jessy-api (A/B of a proposed change, in the same interleaved run).
        for spec in args.variant:
            name, _, vdir = spec.partition("=")
            if not name or not vdir or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in variants:
                log(f"bench: --variant wants NAME=DIR with a new NAME, got {spec!r}")
                return 1
            found = ship_bins(Path(vdir))
            if len(found) != 2:
                log(f"bench: --variant {name}: no jessy-core and jessy-api in {vdir} "
                    "(DIR/<name> or DIR/<name>/bin/<name>)")
                return 1
            variants[name] = {}
            for exe, src in found.items():
                variants[name][exe] = bindir / f"{exe}@{name}"
                shutil.copy2(src, variants[name][exe])
        for name in variants:
            (tmp / f"variant-{name}").mkdir()
        sizes = {k: v.stat().st_size for k, v in bins.items()}
        for name, vb in variants.items():
            sizes.update({f"{k}@{name}": v.stat().st_size for k, v in vb.items()})
        libc = {k: elf_libc(v) for k, v in bins.items()}
        for name, vb in variants.items():
            libc[f"@{name}"] = elf_libc(vb["jessy-core"])
        # The images of the binaries under test (scripts/build-images.sh --no-cargo --no-load).
        if args.product == "ship" and not args.no_images and not args.no_build:
            ship = Path(args.ship_dir).resolve() if args.ship_dir else target_dir / "ship"
            log(f"bench: scripts/build-images.sh --no-cargo --no-load (JESSY_SHIP_DIR={ship})")
            r = subprocess.run(["bash", str(REPO / "scripts" / "build-images.sh"), "--no-cargo", "--no-load"],
                               cwd=REPO, env=dict(os.environ, JESSY_SHIP_DIR=str(ship)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode:
                failures.append(f"scripts/build-images.sh --no-cargo --no-load failed:\n{r.stderr[-1500:]}")

        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        cpu = "?"
        for l in Path("/proc/cpuinfo").read_text().splitlines():
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
        meta = {"type": "meta", "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "cpu": cpu, "nproc": os.cpu_count(), "kernel": f"Linux {platform.release()}",
                "rustc": tool_version(["rustc", "--version"]).split(" (")[0],
                "wrk": "wrk " + tool_version(["wrk", "-v"]).split()[1] if shutil.which("wrk") else "?",
                "nginx": tool_version([args.nginx, "-v"]).replace("nginx version: ", ""),
                "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
                "conns": args.conns, "threads": args.threads, "starts": args.starts,
                "features": args.features or "default", "log_format": args.log_format,
                "nice": args.nice, "git": git + (" + uncommitted changes in src/Cargo" if dirty else ""),
                "product": args.product, "variants": sorted(variants), "libc": libc,
                "loadavg": Path("/proc/loadavg").read_text().split()[:3], "sizes": sizes}
        log(f"bench: binaries in {bindir}; logs in {logdir}; results -> {jsonl}")

        ports = Ports(args.port_base)
        all_cases = build_cases(args, bins, ports, tmp)
        for name, vbins in variants.items():
            all_cases += build_cases(args, dict(bins) | vbins, ports, tmp / f"variant-{name}", suffix=name)
        cases = list(all_cases)
        if args.only:
            wanted = [w.strip() for w in args.only.split(",") if w.strip()]
            unknown = set(wanted) - {c["name"] for c in cases}
            if unknown:
                log(f"bench: unknown case(s): {', '.join(sorted(unknown))}; known: "
                    f"{', '.join(c['name'] for c in cases)}")
                return 1
            cases = [c for c in cases if c["name"] in wanted]
        elif not args.extra:
            cases = [c for c in cases if c["default"]]

        def run_rounds(members: list[dict], rate: float | None = None) -> None:
            """Every round runs every member once, the order rotating per round."""
            at = f" @{rate:,.0f}" if rate else ""
            for rnd in range(1, args.rounds + 1):
                shift = (rnd - 1) % len(members)
                for c in members[shift:] + members[:shift]:
                    row = run_case(args, c, rnd, logdir, rate=rate)
                    emit(row)
                    if not row["ok"]:
                        failures.append(f"round {rnd} {c['name']}{at}: {row.get('error')}")
                        log(f"  r{rnd} {c['name']:<17}{at} FAILED: {row.get('error')}")
                        continue
                    log(f"  r{rnd} {c['name']:<17}{at} {row['rps']:>10,.0f} req/s  "
                        f"p50 {row['p50_ms']:.3f}  p99 {row['p99_ms']:.2f}  "
                        f"p99.9 {row['p999_ms']:.2f} ms  srv {row['server_cpu']:.2f}  "
                        f"other {row['other_cpu']:.2f}  pre {row['pre_busy']:.2f}")

        # 2. load, interleaved
        if not args.no_load:
            n = len(cases)
            est = args.rounds * n * (args.duration + args.warmup + 0.6)
            log(f"bench: {args.rounds} round(s) × {n} cases × ({args.warmup}+{args.duration}) s, "
                f"about {est / 60:.1f} min")
            run_rounds(cases)

        # 2b. latency at a fixed offered rate, per group, interleaved
        if not args.no_load and not args.no_rate:
            by_load = summarize_load(cases, rows)
            selected = {c["name"]: c for c in cases}
            for group in RATE_GROUPS:
                members = [selected[n] for n in group if n in selected and n in by_load]
                if len(members) < 2:
                    continue
                rate = round(args.rate_fraction * min(by_load[c["name"]]["rps"] for c in members), -2)
                log(f"bench: fixed rate {rate:,.0f} req/s ({args.rate_fraction:g} × the slowest of "
                    f"{', '.join(c['name'] for c in members)}), {args.rounds} round(s), oha")
                run_rounds(members, rate)

        # 3. startup
        starts: list[dict] = []
        named = {c["name"]: c for c in all_cases}
        services = []
        for v in [""] + [f"@{n}" for n in variants]:
            core_p = named["core-health" + v]["procs"][0]
            services += [("jessy-core" + v, core_p, None),
                         ("jessy-api" + v, named["api-health" + v]["procs"][1], core_p)]
        services.append(("axum-ref", named["axum-ref"]["procs"][0], None))
        if "axum-ref-musl" in named:
            services.append(("axum-ref-musl", named["axum-ref-musl"]["procs"][0], None))
        log(f"bench: startup, {args.starts} starts each (poll every 0.5 ms)")
        for name, p, backend in services:
            for r in startup(args, name, p, args.starts, logdir, backend):
                emit(r)
                if not r.get("ok"):
                    failures.append(f"startup {name}: {r.get('error')}")
            ok = [r["ready_ms"] for r in rows if r["type"] == "startup" and r["name"] == name and r.get("ok")]
            if ok:
                log(f"  {name:<10} median {med(ok):.2f} ms (min {min(ok):.2f}, max {max(ok):.2f})")

        # 4. sizes
        images = image_sizes()
        emit({"type": "size", "binaries": sizes, "images": images})

        # 5. micro
        micro_rows = []
        if not args.no_micro:
            micro_rows, raw, ok = micro(args, target_dir)
            for m in micro_rows:
                emit(m)
            if not ok:
                failures.append(f"cargo bench --bench navigation failed:\n{raw[-1500:]}")

        # 6. build times
        build_res = None
        if args.build_times:
            build_res = build_times(args)
            emit(build_res)
            if not build_res.get("ok"):
                failures.append(f"build times: {build_res.get('error')}")

        load_rows = [r for r in rows if r["type"] == "load" and r.get("ok")]
        meta["pre_busy_med"] = med([r["pre_busy"] for r in load_rows])
        meta["pre_busy_max"] = max([r["pre_busy"] for r in load_rows], default=None)
        meta["other_cpu_med"] = med([r["other_cpu"] for r in load_rows])
        meta["other_cpu_max"] = max([r["other_cpu"] for r in load_rows], default=None)
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        by = summarize_load(cases, rows)
        by_rate = summarize_load(cases, rows, kind="rate")
        meta["oha"] = tool_version([args.oha, "--version"]) if by_rate else None
        text, budget = render(meta, cases, by, by_rate, [r for r in rows if r["type"] == "startup"],
                              sizes, images, micro_rows, build_res, failures)
        emit(meta)
        for b in budget:
            emit(b)
        text += f"\nTotal time {meta['elapsed_s']:.0f} s. Raw rows: {jsonl.relative_to(REPO) if jsonl.is_relative_to(REPO) else jsonl}\n"
        print(text)
        mdfile.write_text(text)
        return 1 if failures else 0
    except KeyboardInterrupt as e:
        log(f"bench: interrupted ({e}); stopping the servers it started")
        return 130
    except subprocess.CalledProcessError as e:
        log(f"bench: build failed: {e}")
        return 1
    finally:
        stop_all()
        out.close()
        if failures:
            log(f"bench: server logs kept in {logdir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
