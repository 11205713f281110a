#!/usr/bin/env python3
"""Helper of bench/compare.sh: CPU samples from /proc, per-run figures, and the markdown table.

Subcommands (compare.sh calls each; none is meant to be run by hand, though all can be):
  freeport                      print a free TCP port on 127.0.0.1
  cpu PID [--tree]              print PID's CPU seconds (utime+stime+cutime+cstime from
                                /proc/PID/stat; with --tree also every live child's)
  record KIND RAW ...           print one run's figures as a JSON line (KIND: verso, redis, pgbench)
  write RESULTS OUTPUT ...      put the table between the markers in OUTPUT
"""

import argparse
import glob
import json
import os
import re
import socket
import statistics
import sys

BEGIN = "<!-- compare.sh begin -->"
END = "<!-- compare.sh end -->"
SECTION = "## Side by side with Redis and PostgreSQL (bench/compare.sh)"
TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid, tree):
    """CPU of PID and of the children it has reaped (cutime, cstime); with tree, plus live children.

    PostgreSQL forks a backend per connection and reaps it when the client leaves, so its
    time lands in the postmaster's cutime/cstime; a before/after sample with tree=True
    therefore counts every backend, those that came and went in between included.
    """
    fields = stat_fields(pid)
    if fields is None:
        sys.exit(f"no process {pid}")
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    if tree:
        for path in glob.glob("/proc/[0-9]*/stat"):
            child = int(path.split("/")[2])
            child_fields = stat_fields(child)
            if child_fields and int(child_fields[1]) == pid:
                total += sum(int(child_fields[i]) for i in (11, 12, 13, 14))
    return total / TICKS


def percentile(sorted_values, p):
    """The nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def record(args):
    """One run's figures: ops/s, p50 and p99 in ms, server CPU µs per op, applied writes."""
    cpu = args.cpu_after - args.cpu_before
    out = {"system": args.system, "label": args.label, "run": args.run}
    if args.kind == "verso":
        with open(args.raw) as f:
            report = json.load(f)
        ops = report["ops"]
        out.update(
            ops=ops,
            seconds=report["seconds"],
            ops_per_s=report["opsPerSecond"],
            p50_ms=report["p50"] / 1000,
            p99_ms=report["p99"] / 1000,
            conflicts=report["conflicts"],
            errors=report["errors"],
            applied=ops,
            harness_cpu_us_per_op=report.get("serverCPUMicrosPerOp"),
        )
    elif args.kind == "redis":
        # --csv: a header line, then "test","rps","avg","min","p50","p95","p99","max"; the test
        # name is the command line and may hold commas and quotes, so split from the right.
        with open(args.raw) as f:
            line = [l for l in f.read().splitlines() if l.strip()][-1]
        cells = [c.strip('"') for c in line.rsplit(",", 7)[1:]]
        rps, p50, p99 = float(cells[0]), float(cells[3]), float(cells[5])
        ops = args.ops
        out.update(ops=ops, seconds=ops / rps, ops_per_s=rps, p50_ms=p50, p99_ms=p99)
    elif args.kind == "pgbench":
        # pgbench -l: "client_id transaction_no time_us script_no epoch_s epoch_us" per transaction.
        latencies = []
        for path in glob.glob(args.raw + ".*"):
            if not re.fullmatch(r"\.\d+(\.\d+)?", path[len(args.raw):]):
                continue
            with open(path) as f:
                latencies.extend(int(line.split()[2]) for line in f if line.strip())
        latencies.sort()
        tps = None
        with open(args.out) as f:
            for line in f:
                if line.startswith("tps = "):
                    tps = float(line.split()[2])
        ops = len(latencies)
        out.update(
            ops=ops,
            seconds=ops / tps if tps else None,
            ops_per_s=tps,
            p50_ms=percentile(latencies, 50) / 1000,
            p99_ms=percentile(latencies, 99) / 1000,
        )
    if args.applied is not None:
        out["applied"] = args.applied
    out["cpu_s"] = cpu
    out["cpu_us_per_op"] = cpu * 1e6 / out["ops"] if out["ops"] else None
    with open(args.client_time) as f:
        user, system = f.read().split()[-2:]
    out["client_cpu_s"] = float(user) + float(system)
    out["client_cpu_us_per_op"] = out["client_cpu_s"] * 1e6 / out["ops"] if out["ops"] else None
    print(json.dumps(out))


def fmt_int(x):
    return f"{x:,.0f}"


def write(args):
    with open(args.results) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    meta = vars(args)
    meta["nproc"] = len(os.sched_getaffinity(0))
    with open("/proc/cpuinfo") as f:
        meta["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "unknown")
    meta["kernel"] = os.uname().release
    with open(args.commands) as f:
        meta["commands"] = f.read().rstrip("\n").splitlines()
    with open(args.lua) as f:
        meta["lua"] = f.read()
    with open(args.sql) as f:
        meta["sql"] = f.read()
    order = []
    for r in runs:
        if r["system"] not in order:
            order.append(r["system"])
    medians = {}
    for system in order:
        mine = [r for r in runs if r["system"] == system]
        medians[system] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("ops_per_s", "p50_ms", "p99_ms", "cpu_us_per_op", "client_cpu_us_per_op")
        }
        medians[system]["runs"] = mine
    base = medians[order[0]]["ops_per_s"]

    lines = [
        BEGIN,
        f"Measured {meta['date']} by `{meta['invocation']}` at commit `{meta['commit']}`.",
        "",
        f"**Machine:** {meta['nproc']} CPUs (`nproc`), `{meta['cpu_model']}`, Linux {meta['kernel']}; "
        f"{meta['versions']}. Every server and its load generator ran on these same cores, "
        f"a shared machine that may also run other work (load average {meta['load']}), "
        "so the absolute figures are "
        "noisy lower bounds; the **ratios within this one run** (systems interleaved run by run) "
        "are what to read.",
        "",
        f"{meta['connections']} connections, {fmt_int(meta['keys'])} keys, ~{meta['value_bytes']}-byte values, "
        f"{meta['runs']} run{'s' if meta['runs'] != 1 else ''} of {meta['duration']:g} s per row after a 2 s warm-up; medians of the runs "
        "(each column's median on its own). Server CPU is utime+stime (+ reaped children) from "
        "/proc/PID/stat before and after each run, divided by the run's operations; load tool CPU is "
        "the user + system time of verso-load, redis-benchmark or pgbench over the same run, which "
        f"competes with the server for the same {meta['nproc']} cores.",
        "",
        "| system / config | ops/s | p50 ms | p99 ms | server CPU µs/op | load tool CPU µs/op | ops/s ÷ Verso | runs: ops/s; writes applied |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for system in order:
        m = medians[system]
        label = m["runs"][0]["label"]
        per_run = ", ".join(fmt_int(r["ops_per_s"]) for r in m["runs"])
        ops = sum(r["ops"] for r in m["runs"])
        applied = sum(r.get("applied", r["ops"]) for r in m["runs"])
        note = f"{per_run}; {applied / ops * 100:.2f} % of ops wrote" if ops else per_run
        if system == order[0]:
            conflicts = sum(r.get("conflicts", 0) for r in m["runs"])
            errors = sum(r.get("errors", 0) for r in m["runs"])
            note += f" ({conflicts} conflicts, {errors} errors)"
        lines.append(
            f"| {label} | {fmt_int(m['ops_per_s'])} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['cpu_us_per_op']:.1f} | {m['client_cpu_us_per_op']:.1f} | {m['ops_per_s'] / base:.2f} | {note} |"
        )
    lines += [
        "",
        "Commands, exactly as run (`$W` is the run's temporary folder; ports were free ones):",
        "",
        "```sh",
        *meta["commands"],
        "```",
        "",
        "The Redis script (`bench/cas.lua`) and the pgbench script (`bench/django_cas.sql`):",
        "",
        "```lua",
        meta["lua"].rstrip(),
        "```",
        "",
        "```sql",
        meta["sql"].rstrip(),
        "```",
        END,
    ]
    block = "\n".join(lines) + "\n"

    try:
        with open(args.output) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block.rstrip("\n") + tail
    else:
        if SECTION not in text:
            text = text.rstrip("\n") + "\n\n" + SECTION + "\n\nRun `bench/compare.sh --help` for the options.\n"
        text = text.rstrip("\n") + "\n\n" + block
    with open(args.output, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("freeport")
    p = sub.add_parser("cpu", help="CPU seconds of the processes, summed (--tree: with their live children)")
    p.add_argument("pids", type=int, nargs="+")
    p.add_argument("--tree", action="store_true")
    p = sub.add_parser("record")
    p.add_argument("kind", choices=["verso", "redis", "pgbench"])
    p.add_argument("raw", help="verso-load JSON, redis-benchmark CSV, or the pgbench log prefix")
    p.add_argument("--system", required=True)
    p.add_argument("--label", required=True, help="the table's first column")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--cpu-before", type=float, required=True)
    p.add_argument("--cpu-after", type=float, required=True)
    p.add_argument("--ops", type=int, help="requests sent (redis)")
    p.add_argument("--out", help="pgbench's standard output (pgbench)")
    p.add_argument("--client-time", required=True, help="the load tool's `time` output: user and system seconds")
    p.add_argument("--applied", type=int, help="writes that took effect (sum of versions after - before)")
    p = sub.add_parser("write")
    p.add_argument("results", help="the record lines of every run")
    p.add_argument("output", help="the markdown file to update")
    for option in ("date", "commit", "invocation", "versions", "load", "commands", "lua", "sql"):
        p.add_argument("--" + option, required=True)
    for option in ("runs", "connections", "keys", "value-bytes"):
        p.add_argument("--" + option, type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    if args.command == "freeport":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
    elif args.command == "cpu":
        print(f"{sum(cpu_seconds(pid, args.tree) for pid in args.pids):.2f}")
    elif args.command == "record":
        record(args)
    else:
        write(args)


if __name__ == "__main__":
    main()
