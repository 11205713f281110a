#!/usr/bin/env python3
"""Runs verso-load's target scenarios against fresh release servers and prints a markdown table.

    bench/targets.py [--server [LABEL=]PATH ...] [--load PATH] [--runs N] [--duration S] [--only NAME ...]

Each scenario gets a new verso-server on a temporary folder and a free port (stopped after),
runs --runs times (medians reported), and the table gives each figure next to its target in
the issue, with the exact verso-load command. Given several --server builds (say the previous
commit's and this one's), every run of a scenario is made on each of them in turn, so that a
change in the machine's load hits them alike, and each gets its own row. The server and the load generator share this
machine's cores, so the figures are lower bounds for the server alone. A benchmark, not a
test: .ci/run does not run it. Build first: swift build -c release --product verso-load &&
swift build -c release --product verso-server.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(server, data, extra):
    log = open(os.path.join(data, "server.log"), "w+")
    proc = subprocess.Popen([server, "--port", "0", "--data", data, *extra], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        log.seek(0)
        match = re.search(r"verso\.url=(ws://\S+)", log.read())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    log.seek(0)
    sys.exit(f"targets.py: verso-server did not start:\n{log.read()}")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_load(load, args, url, pid, workdir):
    report = os.path.join(workdir, "report.json")
    command = [load, *args, "--url", url, "--server-pid", str(pid), "--json", report, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    if not os.path.exists(report):
        sys.exit(f"targets.py: {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    with open(report) as f:
        figures = json.load(f)
    os.remove(report)
    figures["exitStatus"] = result.returncode
    return figures


SCENARIOS = [
    # name, server flags, verso-load arguments (with {d} for --duration), timed
    ("cas", [], ["cas", "--connections", "64", "--keys", "10000", "--value-size", "100", "--duration", "{d}", "--warmup", "2"]),
    ("cas-normal", ["--durability", "normal"], ["cas", "--connections", "64", "--keys", "10000", "--value-size", "100", "--duration", "{d}", "--warmup", "2"]),
    ("fanout", [], ["fanout", "--writers", "1", "--subscribers", "1000", "--duration", "{d}", "--warmup", "2"]),
    # 10,000 subscribers and the writer: one more than the server's default --max-connections
    # (without the flag, a subscriber is refused with 503 and the run ends with that error).
    ("connections", ["--max-connections", "10100"], ["connections", "--connections", "10000"]),
    ("counter", [], ["counter", "--connections", "64", "--hot", "8", "--ops", "50"]),
    ("mixed", [], ["mixed", "--connections", "64", "--keys", "10000", "--read-percent", "80", "--subscribe", "1", "--duration", "{d}", "--warmup", "2"]),
    ("hog", [], ["hog", "--connections", "16", "--keys", "1600", "--rate", "500", "--record-size", "900000", "--pipeline", "128", "--attack", "mixed", "--duration", "{d}", "--warmup", "2"]),
]


def median(values):
    return statistics.median(values) if values else float("nan")


def extra(figures, name):
    value = figures.get("extra", {}).get(name)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def row(name, runs, command, label=None):
    ops = median([r["opsPerSecond"] for r in runs])
    p99 = median([r["p99"] / 1000 for r in runs])
    cpu = median([r.get("serverCPUMicrosPerOp") or extra(r, "server CPU µs per delivery") or float("nan") for r in runs])
    errors = sum(r["errors"] for r in runs)
    failed = [f for r in runs for f in r.get("failures", [])]
    each = ", ".join(f"{r['opsPerSecond']:,.0f}" for r in runs)
    check = "0 errors" if errors == 0 and not failed else f"**{errors} errors; {'; '.join(failed)}**"
    if name in ("cas", "cas-normal"):
        target = "≥ 30,000 acks/s, p99 ≤ 10 ms" + (" (target is for full durability)" if name == "cas-normal" else "")
        met = "yes" if ops >= 30000 and p99 <= 10 else "no"
        result = f"{ops:,.0f} acks/s, p99 {p99:.1f} ms, server {cpu:.1f} µs/ack (runs: {each}); {check}"
    elif name == "fanout":
        target = "≥ 200,000 deliveries/s, p99 ≤ 50 ms"
        met = "yes" if ops >= 200000 and p99 <= 50 else "no"
        result = f"{ops:,.0f} deliveries/s, p99 {p99:.1f} ms, server {cpu:.1f} µs/delivery (runs: {each}); {check}"
    elif name == "connections":
        per = median([extra(r, "server RSS per connection KiB") for r in runs])
        reach = median([extra(r, "time to deliver to all ms") for r in runs])
        target = "10,000 idle connections with compression, ≤ 32 KiB server RSS each"
        met = "yes" if per <= 32 and errors == 0 and not failed else "no"
        result = f"{per:.1f} KiB per connection; one change reached all 10,000 in {reach:,.0f} ms; {check}"
    elif name == "counter":
        exact = all(extra(r, "final count") == extra(r, "expected count") for r in runs) and not failed
        target = "exact count, every acknowledged (key, version) unique"
        met = "yes" if exact and errors == 0 else "no"
        counts = ", ".join(f"{extra(r, 'final count'):,.0f} of {extra(r, 'expected count'):,.0f}" for r in runs)
        result = f"final counts {counts}; {sum(r['conflicts'] for r in runs):,} conflicts retried; {check}"
    elif name == "hog":
        attacker = median([extra(r, "attacker requests/s") for r in runs])
        target = "other clients' p99 ≤ 50 ms while one connection pipelines 128 patches/stale puts on a 0.9 MB record"
        met = "yes" if p99 <= 50 and errors == 0 and not failed else "no"
        result = f"victims {ops:,.0f} acks/s, p99 {p99:.1f} ms, server {cpu:.1f} µs/victim ack; attacker {attacker:,.1f} requests/s (runs: {each}); {check}"
    else:
        target = "(no target: a read/write/subscribe mix)"
        met = "—"
        result = f"{ops:,.0f} requests/s, p99 {p99:.1f} ms, server {cpu:.1f} µs/request (runs: {each}); {check}"
    shown = f"{name} ({label})" if label else name
    return f"| {shown} | {target} | {result} | {met} | `{command}` |"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", help="a verso-server binary, optionally LABEL=PATH; repeat to compare builds (default: .build/release/verso-server)")
    parser.add_argument("--load", default=os.path.join(ROOT, ".build/release/verso-load"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    args = parser.parse_args()
    servers = []
    for given in args.server or [os.path.join(ROOT, ".build/release/verso-server")]:
        label, _, path = given.rpartition("=")
        servers.append((label or None, path))
    if len(servers) > 1 and any(label is None for label, _ in servers):
        sys.exit("targets.py: give each of several --server builds a label: LABEL=PATH")
    rows = []
    for name, flags, load_args in SCENARIOS:
        if args.only and name not in args.only:
            continue
        load_args = [a.replace("{d}", str(args.duration)) for a in load_args]
        runs = {label: [] for label, _ in servers}
        for run in range(args.runs if name != "connections" else 1):
            for label, path in servers:
                with tempfile.TemporaryDirectory(prefix="verso-targets.") as data:
                    proc, url = start_server(path, data, flags)
                    try:
                        print(f"targets.py: {name} run {run + 1}{f' ({label})' if label else ''}", file=sys.stderr)
                        runs[label].append(run_load(args.load, load_args, url, proc.pid, data))
                    finally:
                        stop_server(proc)
        server = " ".join(["verso-server", *flags])
        for label, _ in servers:
            rows.append(row(name, runs[label], f"{server}; verso-load {' '.join(load_args)}", label))
    print("| scenario | target | measured (medians) | met | command |")
    print("| --- | --- | --- | --- | --- |")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
