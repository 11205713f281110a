#!/usr/bin/env python3
"""Where verso-server's CPU goes under the cas load: perf samples split by thread and by kind of work.

    bench/profile_split.py [--server PATH] [--load PATH] [--duration S] [--frequency HZ] [--keep FILE]

Starts the server on a temporary folder and a free port, warms it with a 3 s cas load, then
samples it with `perf record -g` (frame pointers) for --duration seconds while
`verso-load cas --connections 64 --keys 10000 --value-size 100` runs with --server-pid, and
prints the server CPU per acknowledged write that run measured (sampling adds a few percent)
and a table: for each kind of thread (the NIO event loops, the SQLite writer's dispatch queue,
the cooperative pool) the share of all samples, split by what the sample's stack was doing.
Kernel work is named by the first of these entry points found on the stack: fdatasync, pwrite,
pread, the loopback's receive processing (net_rx_action and the like: on loopback the client's
side of TCP runs in the sending thread), tcp_sendmsg, the socket read, epoll, futex and
scheduling; other samples by the library of their innermost frame (SQLite, the Swift runtime,
libc, SwiftNIO, Verso). Debian's libsqlite3 has no frame pointers, so its samples are not
traced to the statement that ran them. A diagnostic, not a test; needs perf (linux-perf).
Build first: swift build -c release --product verso-load && swift build -c release --product verso-server.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (category, substrings of any frame on the stack), first match wins.
KERNEL_ENTRIES = [
    ("fsync (fdatasync)", ["fdatasync"]),
    ("WAL and database writes (pwrite)", ["pwrite"]),
    ("database reads (pread)", ["pread"]),
    ("loopback: the client's side of TCP, run in the sender", ["net_rx_action", "__netif_receive_skb", "process_backlog"]),
    ("socket send (tcp_sendmsg)", ["tcp_sendmsg"]),
    ("socket receive (read)", ["tcp_recvmsg", "sock_read_iter"]),
    ("epoll", ["epoll_wait", "epoll_ctl"]),
    ("wakeups and scheduling (futex, context switches)", ["futex", "finish_task_switch", "schedule", "try_to_wake_up"]),
]


def thread_kind(comm: str) -> str:
    if comm.startswith("NIO"):
        return "event loops"
    if "overcommit" in comm:
        return "SQLite writer queue"
    return "cooperative pool and other queues"


def innermost_kind(frame: str) -> str:
    if "[kernel" in frame:
        return "kernel, other"
    if "sqlite" in frame:
        return "SQLite"
    if "libswiftCore" in frame or "libswift_Concurrency" in frame:
        return "Swift runtime (retain/release, metadata, casts, hashing)"
    if "libc.so" in frame:
        return "libc (malloc, free, memcpy)"
    if re.search(r"\$s\d*NIO", frame):
        return "SwiftNIO"
    return "Verso (with library code inlined into it)"


def samples(script_output: str):
    """(comm, frames innermost first) per sample of `perf script -F comm,ip,sym,dso`."""
    comm, frames = None, []
    for line in script_output.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line[0].isspace():
            comm, frames = line.strip(), []
        else:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append(parts[1])
    if comm is not None:
        yield comm, frames


def classify(script_output: str) -> tuple[int, collections.Counter, collections.Counter]:
    by_kind: collections.Counter = collections.Counter()
    by_work: collections.Counter = collections.Counter()
    total = 0
    for comm, frames in samples(script_output):
        kind = thread_kind(comm)
        stack = " ".join(frames)
        work = next((name for name, keys in KERNEL_ENTRIES if any(key in stack for key in keys)), None)
        if work is None:
            work = innermost_kind(frames[0] if frames else "")
        by_kind[kind] += 1
        by_work[(kind, work)] += 1
        total += 1
    return total, by_kind, by_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.path.join(ROOT, ".build/release/verso-server"))
    parser.add_argument("--load", default=os.path.join(ROOT, ".build/release/verso-load"))
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--frequency", type=int, default=2999)
    parser.add_argument("--keep", help="also write perf script's output here")
    args = parser.parse_args()
    cas = ["cas", "--connections", "64", "--keys", "10000", "--value-size", "100", "--warmup", "0"]
    with tempfile.TemporaryDirectory() as folder:
        log_path = os.path.join(folder, "server.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([args.server, "--port", "0", "--data", folder], stdout=log, stderr=subprocess.STDOUT)
        try:
            url = None
            for _ in range(150):
                match = re.search(r"verso\.url=(ws://\S+)", open(log_path).read())
                if match:
                    url = match.group(1)
                    break
                time.sleep(0.2)
            if url is None:
                sys.exit("profile_split.py: the server did not start:\n" + open(log_path).read())
            subprocess.run([args.load, *cas, "--duration", "3", "--url", url, "--quiet"], check=True, stdout=subprocess.DEVNULL)
            data = os.path.join(folder, "perf.data")
            perf = subprocess.Popen(
                ["perf", "record", "-F", str(args.frequency), "-g", "-p", str(server.pid), "-o", data, "--", "sleep", str(args.duration)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            report_path = os.path.join(folder, "report.json")
            subprocess.run(
                [args.load, *cas, "--duration", str(args.duration), "--url", url, "--server-pid", str(server.pid), "--json", report_path, "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            perf.wait()
            report = json.load(open(report_path))
        finally:
            server.terminate()
            server.wait()
        script = subprocess.run(
            ["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"], capture_output=True, text=True, check=True
        ).stdout
    if args.keep:
        with open(args.keep, "w") as kept:
            kept.write(script)
    total, by_kind, by_work = classify(script)
    if total == 0:
        sys.exit("profile_split.py: perf recorded no samples")
    per_op = report.get("serverCPUMicrosPerOp") or 0.0
    print(f"{report.get('opsPerSecond', 0):,.0f} acks/s, server {per_op:.1f} µs of CPU per ack (while sampled), {total:,} samples\n")
    print("| thread | work | share of samples | µs per ack |")
    print("| --- | --- | ---: | ---: |")
    for kind, count in by_kind.most_common():
        print(f"| **{kind}** | (all) | **{100 * count / total:.1f} %** | **{per_op * count / total:.1f}** |")
        for (k, work), n in by_work.most_common():
            if k == kind and n / total >= 0.005:
                print(f"| | {work} | {100 * n / total:.1f} % | {per_op * n / total:.1f} |")


if __name__ == "__main__":
    main()
