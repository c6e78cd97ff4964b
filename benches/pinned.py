#!/usr/bin/env python3
"""Pinned benchmark: release-edge against nginx, one server CPU, one load-generator CPU.

    benches/pinned.py                      # every workload, 3 rounds x 10 s (~12 minutes)
    benches/pinned.py --rounds 1 --duration 5 --only yaml latest
    benches/pinned.py --profile            # also a perf profile of both servers per workload

The server under test (release-edge, or nginx with ONE worker, `sendfile on`,
`open_file_cache`) runs on CPU 0 (`taskset -c 0`); wrk runs on CPU 1 with one thread. The
two servers serve the same files from the same directory and are measured in turn, the
order alternating between rounds. For each run the server's own CPU time is read from
/proc/PID/stat, so that the cheap requests, where wrk saturates its CPU near nginx's rate,
can be compared by work per server CPU-second. Figures are medians over the rounds; ratios
are release-edge / nginx in the same run. These machines are noisy: quote ratios.

Workloads (release-edge route | nginx equivalent):
  yaml      /update/linux/x64/0.9.0/latest-linux.yml (cached feed) | the manifest as a file
  yaml256   the same with 256 connections (throughput and p99)
  json      /update/darwin/arm64/1.0.0, Accept: application/json   | the manifest as a file
  latest    /latest/mac/arm64 (302)                                | `return 302` in nginx
  small     /releases/v1.0.0/small.bin (1 KiB)
  big       /releases/v1.0.0/big.bin (256 MiB), 4 connections
  ranges    random 1 MiB ranges of big.bin, 4 connections
  rss       peak RSS while 200 clients download huge.bin (1 GiB)

Writes benches/out/pinned.md (and with --profile benches/out/profiles/{workload}[.nginx].txt). Binds only
127.0.0.1; every run is bounded in time; the servers are stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LUA = REPO / "benches" / "lua"
OUT = REPO / "benches" / "out"
MIB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, **kw)


def ensure_tools(profile: bool) -> None:
    want = {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux", "curl": "curl"}
    if profile:
        want["perf"] = "linux-perf"
    missing = [pkg for tool, pkg in want.items() if shutil.which(tool) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "update", "-qq")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(*sudo, "apt-get", "install", "-y", "-qq", *missing, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"not up within {limit}s: {url}")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, kernel) CPU seconds of the processes so far."""
    user = kernel = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])  # utime (field 14)
        kernel += int(fields[12])  # stime (field 15)
    return user / TICKS, kernel / TICKS


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Server:
    def __init__(self, name: str, argv: list[str], env: dict, url: str, probe: str, cwd=None):
        self.name, self.url = name, url
        # Run in the temporary directory: no config file of the checkout is read (an older
        # binary, measured for comparison, may not know its keys).
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_up(url + probe)

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wrk(url: str, conns: int, duration: int, script: Path, args: list[str] = (), headers=()):
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
            "--timeout", "10s", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    if args:
        argv += ["--", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    line = next((l for l in out.splitlines() if l.startswith("WRKRESULT")), None)
    if line is None:
        sys.exit(f"wrk printed no result for {url}:\n{out}")
    r = dict(kv.split("=") for kv in line.split()[1:])
    r = {k: float(v) for k, v in r.items()}
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    if errors:
        sys.exit(f"wrk saw {errors:.0f} errors on {url}: {line}")
    return r


def measure(server: Server, path: str, conns: int, duration: int, script: Path, args=(), headers=()):
    pids = server.pids()
    user0, kernel0 = cpu_seconds(pids)
    r = wrk(server.url + path, conns, duration, script, args, headers)
    user1, kernel1 = cpu_seconds(pids)
    user, kernel = user1 - user0, kernel1 - kernel0
    cpu = user + kernel
    secs = r["duration_us"] / 1e6
    return {
        "rps": r["requests"] / secs,
        "mibs": r["bytes"] / secs / MIB,
        "p99_ms": r["p99_us"] / 1000,
        "cpu": cpu,
        "per_cpu_s": r["requests"] / cpu if cpu else float("inf"),
        "cpu_per_gib": cpu / (r["bytes"] / (1 << 30)) if r["bytes"] else 0.0,
        "requests": r["requests"],
        # Where a request's CPU goes: the server's own code, and the kernel (syscalls, TCP).
        "user_us": user / r["requests"] * 1e6 if r["requests"] else 0.0,
        "kernel_us": kernel / r["requests"] * 1e6 if r["requests"] else 0.0,
    }


def profile(server: Server, path: str, conns: int, duration: int, script: Path, args, headers, dest: Path):
    """A perf profile of the server's processes under the workload: the share of each
    binary (the kernel, libc, the server) and the hottest symbols."""
    data = dest.with_suffix(".data")
    pids = ",".join(str(p) for p in server.pids())
    rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", pids,
                            "-o", str(data), "--", "sleep", str(duration)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wrk(server.url + path, conns, duration, script, args, headers)
    rec.wait(duration + 30)
    report = lambda *sort: subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
         "--percent-limit", "0.7", *sort],
        capture_output=True, text=True).stdout
    strip = lambda text: "\n".join(tidy(l) for l in text.splitlines()
                                   if l.strip() and not l.startswith("#"))
    dest.write_text(f"{server.name} {path}, {conns} connections, {duration} s\n\n"
                    f"By binary:\n{strip(report('--sort', 'dso'))}\n\n"
                    f"By symbol:\n{strip(report('--sort', 'dso,symbol'))}\n")
    data.unlink(missing_ok=True)


def tidy(line: str) -> str:
    """A line of `perf report` without its column padding."""
    return re.sub(r"\s{2,}", "  ", line).rstrip().removesuffix("  -  -").rstrip()


def peak_rss(server: Server, path: str, conns: int, duration: int) -> float:
    """MiB: VmHWM for one process (reset first), else the max of the summed VmRSS."""
    pids = server.pids()
    if len(pids) == 1:
        Path(f"/proc/{pids[0]}/clear_refs").write_text("5")
    proc = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}",
                             f"-d{duration}s", "--timeout", "30s", server.url + path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        peak = max(peak, total)
        time.sleep(0.1)
    if len(pids) == 1:
        for line in Path(f"/proc/{pids[0]}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def fetch(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def verify(re: "Server", ngx: "Server") -> None:
    """Both servers answer what the workloads ask, with the same bytes."""
    for path, headers, want in [
        ("/releases/v1.0.0/small.bin", {}, 200),
        ("/releases/v1.0.0/big.bin", {"Range": "bytes=1048576-2097151"}, 206),
        ("/releases/v1.0.0/big.bin", {"Range": "bytes=12345-1061920"}, 206),
    ]:
        a, b = fetch(re.url + path, headers), fetch(ngx.url + path, headers)
        if a[0] != want or b[0] != want or a[1] != b[1]:
            sys.exit(f"{path} {headers}: release-edge {a[0]}, nginx {b[0]}, same bytes: {a[1] == b[1]}")
    checks = [
        ("/update/linux/x64/0.9.0/latest-linux.yml", {}, 200),
        ("/update/darwin/arm64/1.0.0", {"Accept": "application/json"}, 200),
        ("/latest/mac/arm64", {}, 302),
    ]
    for path, headers, want in checks:
        status, _ = fetch(re.url + path, headers)
        if status != want:
            sys.exit(f"release-edge {path}: {status}, expected {want}")
    status, _ = fetch(ngx.url + "/latest/mac/arm64")
    if status != 302:
        sys.exit(f"nginx /latest/mac/arm64: {status}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", help="release-edge binary (default: cargo build --release)")
    ap.add_argument("--profile", action="store_true", help="perf profile of release-edge per workload")
    ap.add_argument("--only", nargs="*", help="workloads to run")
    opts = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two CPUs: one for the server, one for wrk")
    ensure_tools(opts.profile)
    binary = opts.bin
    if not binary:
        sh("cargo", "build", "--release", "--quiet", cwd=REPO)
        binary = str(REPO / "target" / "release" / "release-edge")

    tmp = Path(tempfile.mkdtemp(prefix="pinned-"))
    tmp.chmod(0o755)  # nginx's worker runs as an unprivileged user
    servers: list[Server] = []
    try:
        root = tmp / "store"
        shutil.copytree(REPO / "samples", root)
        files = root / "releases" / "v1.0.0"
        (files / "small.bin").write_bytes(os.urandom(1024))
        with open(files / "big.bin", "wb") as f:
            for _ in range(256):
                f.write(os.urandom(MIB))
        with open(files / "huge.bin", "wb") as out:
            for _ in range(4):
                with open(files / "big.bin", "rb") as src:
                    shutil.copyfileobj(src, out, 16 * MIB)
        re_port, ngx_port = free_port(), free_port()
        dmg = "/releases/v1.1.0/Sample-App-1.1.0-arm64.dmg"
        (tmp / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; sendfile on; keepalive_requests 1000000;
  default_type application/octet-stream;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;
  server {{
    listen 127.0.0.1:{ngx_port}; root {root};
    location = /latest/mac/arm64 {{ return 302 http://127.0.0.1:{ngx_port}{dmg}; }}
  }}
}}
""")
        env = dict(os.environ,
                   RELEASE_EDGE_LISTEN=f"127.0.0.1:{re_port}",
                   RELEASE_EDGE_PUBLIC_URL=f"http://127.0.0.1:{re_port}",
                   RELEASE_EDGE_STORE__ROOT=str(root),
                   RELEASE_EDGE_LOG__LEVEL="warn")
        re = Server("release-edge", [binary, "serve"], env, f"http://127.0.0.1:{re_port}", "/healthz", cwd=tmp)
        servers.append(re)
        ngx = Server("nginx", ["nginx", "-c", str(tmp / "nginx.conf")], dict(os.environ),
                     f"http://127.0.0.1:{ngx_port}", "/releases/latest/latest-linux.yml")
        servers.append(ngx)

        verify(re, ngx)
        report = LUA / "report.lua"
        ranges = (LUA / "range.lua", [str(256 * MIB), str(MIB), "1"])
        manifest = "/releases/latest/latest-linux.yml"
        workloads = {
            # name: (release-edge path, nginx path, connections, script, args, headers, unit)
            "yaml": ("/update/linux/x64/0.9.0/latest-linux.yml", manifest, 64, report, [], [], "req"),
            "yaml256": ("/update/linux/x64/0.9.0/latest-linux.yml", manifest, 256, report, [], [], "req"),
            "json": ("/update/darwin/arm64/1.0.0", manifest, 64, report, [],
                     ["Accept: application/json"], "req"),
            "latest": ("/latest/mac/arm64", "/latest/mac/arm64", 64, report, [], [], "req"),
            "small": ("/releases/v1.0.0/small.bin", "/releases/v1.0.0/small.bin", 64, report, [], [], "req"),
            "big": ("/releases/v1.0.0/big.bin", "/releases/v1.0.0/big.bin", 4, report, [], [], "bytes"),
            "ranges": ("/releases/v1.0.0/big.bin", "/releases/v1.0.0/big.bin", 4, ranges[0], ranges[1], [], "bytes"),
        }
        chosen = opts.only or [*workloads, "rss"]
        results: dict[tuple[str, str], list[dict]] = {}
        for name in chosen:
            if name == "rss":
                continue
            re_path, ngx_path, conns, script, args, headers, _ = workloads[name]
            # Warm both (caches, page cache, connections).
            for server, path in ((ngx, ngx_path), (re, re_path)):
                wrk(server.url + path, conns, 2, script, args, headers if server is re else [])
            for rnd in range(opts.rounds):
                order = [(ngx, ngx_path), (re, re_path)]
                if rnd % 2:
                    order.reverse()
                for server, path in order:
                    hdrs = headers if server is re else []
                    m = measure(server, path, conns, opts.duration, script, args, hdrs)
                    results.setdefault((name, server.name), []).append(m)
                    print(f"{name:8} {server.name:12} round {rnd + 1}: "
                          f"{m['rps']:10.0f} req/s {m['mibs']:8.0f} MiB/s p99 {m['p99_ms']:6.2f} ms "
                          f"cpu {m['cpu']:5.2f} s (user {m['user_us']:.1f} us + kernel "
                          f"{m['kernel_us']:.1f} us per request)", flush=True)
            if opts.profile:
                prof = OUT / "profiles"
                prof.mkdir(parents=True, exist_ok=True)
                profile(re, re_path, conns, opts.duration, script, args, headers, prof / f"{name}.txt")
                profile(ngx, ngx_path, conns, opts.duration, script, args, [], prof / f"{name}.nginx.txt")

        rss = {}
        if "rss" in chosen:
            for server in (ngx, re):
                rss[server.name] = peak_rss(server, "/releases/v1.0.0/huge.bin", 200, 15)

        med = lambda name, srv, key: statistics.median(m[key] for m in results[(name, srv)])
        lines = [
            f"Pinned run {time.strftime('%Y-%m-%d %H:%M')}: server on CPU {SERVER_CPU}, wrk -t1 on CPU "
            f"{CLIENT_CPU}, nginx 1 worker (sendfile, open_file_cache), release-edge log.level=warn; "
            f"median of {opts.rounds} x {opts.duration} s.",
            "",
            "| workload | nginx | release-edge | ratio | nginx per CPU-s | release-edge per CPU-s | ratio "
            "| CPU per request, user + kernel: nginx | release-edge |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in chosen:
            if name == "rss":
                continue
            unit = workloads[name][6]
            conns = workloads[name][2]
            if unit == "req":
                a, b = med(name, "nginx", "rps"), med(name, "release-edge", "rps")
                pa, pb = med(name, "nginx", "p99_ms"), med(name, "release-edge", "p99_ms")
                ca, cb = med(name, "nginx", "per_cpu_s"), med(name, "release-edge", "per_cpu_s")
                lines.append(f"| {name} ({conns} conns) | {a:,.0f} req/s, p99 {pa:.2f} ms | "
                             f"{b:,.0f} req/s, p99 {pb:.2f} ms | {b / a:.2f} | {ca:,.0f} req | "
                             f"{cb:,.0f} req | {cb / ca:.2f} | "
                             f"{med(name, 'nginx', 'user_us'):.1f} + {med(name, 'nginx', 'kernel_us'):.1f} us | "
                             f"{med(name, 'release-edge', 'user_us'):.1f} + "
                             f"{med(name, 'release-edge', 'kernel_us'):.1f} us |")
            else:
                a, b = med(name, "nginx", "mibs"), med(name, "release-edge", "mibs")
                ca, cb = med(name, "nginx", "cpu_per_gib"), med(name, "release-edge", "cpu_per_gib")
                lines.append(f"| {name} ({conns} conns) | {a:,.0f} MiB/s | {b:,.0f} MiB/s | {b / a:.2f} | "
                             f"{ca:.2f} CPU-s/GiB | {cb:.2f} CPU-s/GiB | {ca / cb:.2f} | | |")
        if rss:
            lines.append(f"| peak RSS, 200 clients x 1 GiB | {rss['nginx']:.1f} MiB | "
                         f"{rss['release-edge']:.1f} MiB | | | | | | |")
        table = "\n".join(lines) + "\n"
        print()
        print(table)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "pinned.md").write_text(table)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
