#!/usr/bin/env python3
"""Counts verso-server's heap allocations per acknowledged write (cas) and per fan-out delivery (fanout).

    bench/allocations.py [--server [LABEL=]PATH ...] [--load PATH] [--runs N] [--short S] [--long S] [--only NAME ...]

Compiles bench/malloc-count/malloc_count.c (an LD_PRELOAD interposer counting calls to malloc,
calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc...) into a temporary folder, then
for each scenario and run starts a fresh verso-server with it preloaded on a temporary folder and
a free port, sends it SIGUSR2 (it logs "malloc-count: N") before and after a verso-load run
(--warmup 0, so the report's ops count every acknowledged write, or every delivery), and stops it.
Fixed costs (connecting, the upgrade, caches warming) are cancelled differentially: each run is
a --short and a --long load on two fresh servers, and the figure is
(allocations long - allocations short) / (ops long - ops short). Unlike a throughput or CPU
figure, an allocation count does not move when the machine is busy (only the number of
operations does, and the figure is per operation). Given several --server builds, every run is
made on each in turn. Prints a markdown table of medians with the exact commands. A benchmark,
not a test: .ci/run does not run it. Needs cc; build first: swift build -c release --product
verso-load && swift build -c release --product verso-server.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "bench", "malloc-count", "malloc_count.c")
COUNT = re.compile(r"^malloc-count: (\d+)$", re.MULTILINE)

SCENARIOS = {
    # name: (verso-load arguments with {d} for the duration, what one op is)
    "cas": (["cas", "--connections", "64", "--keys", "10000", "--value-size", "100", "--duration", "{d}", "--warmup", "0"], "ack"),
    "fanout": (["fanout", "--writers", "1", "--subscribers", "200", "--duration", "{d}", "--warmup", "0"], "delivery"),
}


def fail(message: str) -> None:
    sys.exit(f"allocations.py: {message}")


def compile_counter(folder: str) -> str:
    library = os.path.join(folder, "malloc_count.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, SOURCE, "-ldl", "-lpthread"], check=True)
    return library


def start_server(server: str, data: str, library: str, env_extra: dict[str, str] | None = None) -> tuple["subprocess.Popen[bytes]", str, str]:
    """Starts `server` on `data` with `library` preloaded; returns it, its URL and its log's path."""
    log_path = os.path.join(data, "server.log")
    with open(log_path, "w") as log:
        env = dict(os.environ, LD_PRELOAD=library, **(env_extra or {}))
        proc = subprocess.Popen([server, "--port", "0", "--data", data], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        match = re.search(r"verso\.url=(ws://\S+)", read(log_path))
        if match:
            return proc, match.group(1), log_path
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    fail(f"verso-server did not start:\n{read(log_path)}")
    raise AssertionError


def stop_server(proc: "subprocess.Popen[bytes]") -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()


def allocations(proc: "subprocess.Popen[bytes]", log_path: str, settle: float) -> int:
    """Waits `settle` seconds for the server to go idle, then the count it logs on SIGUSR2."""
    time.sleep(settle)
    seen = len(COUNT.findall(read(log_path)))
    proc.send_signal(signal.SIGUSR2)
    deadline = time.time() + 10
    while time.time() < deadline:
        counts = COUNT.findall(read(log_path))
        if len(counts) > seen:
            return int(counts[seen])
        time.sleep(0.05)
    fail(f"verso-server logged no malloc-count after SIGUSR2 (is the interposer loaded?):\n{read(log_path)[-2000:]}")
    raise AssertionError


def run_load(load: str, args: list[str], url: str, data: str) -> dict[str, Any]:
    report = os.path.join(data, "report.json")
    command = [load, *args, "--url", url, "--json", report, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    if not os.path.exists(report):
        fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    with open(report) as f:
        figures: dict[str, Any] = json.load(f)
    if figures["errors"] or figures.get("failures"):
        fail(f"{' '.join(args)}: {figures['errors']} errors; {'; '.join(figures.get('failures', []))}")
    return figures


def measure(server: str, load: str, args: list[str], library: str, settle: float) -> tuple[int, int]:
    """One load on a fresh server: (server allocations during it, operations)."""
    with tempfile.TemporaryDirectory(prefix="verso-allocations.") as data:
        proc, url, log_path = start_server(server, data, library)
        try:
            before = allocations(proc, log_path, settle)
            figures = run_load(load, args, url, data)
            after = allocations(proc, log_path, settle)
        finally:
            stop_server(proc)
    return after - before, int(figures["ops"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", help="a verso-server binary, optionally LABEL=PATH; repeat to compare builds (default: .build/release/verso-server)")
    parser.add_argument("--load", default=os.path.join(ROOT, ".build/release/verso-load"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--short", type=float, default=2, help="seconds of the short load (default 2)")
    parser.add_argument("--long", type=float, default=6, help="seconds of the long load (default 6)")
    parser.add_argument("--settle", type=float, default=1, help="seconds of idle before each count (default 1)")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="scenario names to run (default: all)")
    args = parser.parse_args()
    servers = []
    for given in args.server or [os.path.join(ROOT, ".build/release/verso-server")]:
        label, _, path = given.rpartition("=")
        servers.append((label, path))
    if len(servers) > 1 and any(not label for label, _ in servers):
        fail("give each of several --server builds a label: LABEL=PATH")
    if args.long <= args.short:
        fail("--long must be longer than --short")
    rows = []
    with tempfile.TemporaryDirectory(prefix="verso-malloc-count.") as folder:
        library = compile_counter(folder)
        for name, (template, unit) in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            short, long = ([a.replace("{d}", f"{d:g}") for a in template] for d in (args.short, args.long))
            # per build: one (allocations, ops) pair per run, for the short and the long load
            runs: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]] = {label: [] for label, _ in servers}
            for run in range(args.runs):
                for label, path in servers:
                    print(f"allocations.py: {name} run {run + 1}{f' ({label})' if label else ''}", file=sys.stderr)
                    pair = (measure(path, args.load, short, library, args.settle), measure(path, args.load, long, library, args.settle))
                    runs[label].append(pair)
                    (a_short, o_short), (a_long, o_long) = pair
                    print(f"  short: {a_short:,} allocations, {o_short:,} ops; long: {a_long:,} allocations, {o_long:,} ops", file=sys.stderr)
            command = f"LD_PRELOAD=malloc_count.so verso-server --port 0 --data DIR; verso-load {' '.join(short)} (short), {' '.join(long)} (long)"
            for label, _ in servers:
                rows.append(row(f"{name} ({label})" if label else name, unit, runs[label], command))
    print(f"| scenario | allocations per {'/'.join(u for _, u in SCENARIOS.values())} (long − short, median) | per run | raw allocations/op, short / long (medians) | ops short / long (medians) | command |")
    print("| --- | --- | --- | --- | --- | --- |")
    for line in rows:
        print(line)


def row(name: str, unit: str, runs: list[tuple[tuple[int, int], tuple[int, int]]], command: str) -> str:
    each = [(a_long - a_short) / (o_long - o_short) if o_long > o_short else float("nan") for (a_short, o_short), (a_long, o_long) in runs]
    raw_short = statistics.median(a / o if o else float("nan") for (a, o), _ in runs)
    raw_long = statistics.median(a / o if o else float("nan") for _, (a, o) in runs)
    ops_short = statistics.median(o for (_, o), _ in runs)
    ops_long = statistics.median(o for _, (_, o) in runs)
    figures = ", ".join(f"{x:.2f}" for x in each)
    return (f"| {name} | **{statistics.median(each):.2f}** per {unit} | {figures} | {raw_short:.2f} / {raw_long:.2f} "
            f"| {ops_short:,.0f} / {ops_long:,.0f} | `{command}` |")


if __name__ == "__main__":
    main()
