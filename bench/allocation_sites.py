#!/usr/bin/env python3
"""Where verso-server's heap allocations per acknowledged write come from (the cas load), by call site.

    bench/allocation_sites.py [--server PATH] [--load PATH] [--every N] [--duration S] [--top K] [--keep FILE]

Compiles bench/malloc-count/malloc_count.c (an LD_PRELOAD interposer that counts like
malloc_count.c and, while sampling, records the backtrace of every Nth allocation) into a
temporary folder, starts verso-server with it on a temporary folder and a free port, waits a
second, sends SIGUSR2 (sampling on: setup is left out), runs
`verso-load cas --connections 64 --keys 10000 --value-size 100 --duration S --warmup 0`, sends
SIGUSR1 (sampling off; the interposer writes its samples and /proc/self/maps), stops the server
and symbolizes the return addresses with llvm-symbolizer (inlined frames included; the
binary is a PIE, so each address is mapped through the maps and the file's program headers),
Swift names through `swift demangle --simplified`.

Prints: allocations per ack (counted exactly, and sampled x N), by thread kind (NIO event
loops, the SQLite writer queue, the other libdispatch queues and the cooperative pool), a
ranked table of sites (the innermost frame in Verso's Sources/ or in a package or C library,
past the allocator, the Swift runtime and standard library, libdispatch and Foundation), a
ranked table of the innermost Verso function, and the top full stacks. A diagnostic, not a
test; the counts include the 64 connections' upgrades (a fixed cost, small against a few
seconds of writes). Swift async functions show only their synchronous part: the unwinder
stops at the executor, not at the awaiting caller.
"""
import argparse
import collections
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, NamedTuple, NoReturn

from allocations import compile_counter, read, start_server, stop_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message: str) -> NoReturn:
    sys.exit(f"allocation_sites.py: {message}")


# ---- running ----


def run(server: str, load: str, every: int, duration: float, folder: str, connections: int) -> tuple[str, dict[str, Any], str]:
    library = compile_counter(folder)
    data = os.path.join(folder, "data")
    os.mkdir(data)
    out = os.path.join(folder, "samples.txt")
    proc, url, log_path = start_server(server, data, library, {"MALLOC_SITES_EVERY": str(every), "MALLOC_SITES_OUT": out})
    try:
        time.sleep(1)
        proc.send_signal(signal.SIGUSR2)
        time.sleep(0.05)
        report = os.path.join(folder, "report.json")
        command = [load, "cas", "--connections", str(connections), "--keys", "10000", "--value-size", "100",
                   "--duration", f"{duration:g}", "--warmup", "0", "--url", url, "--quiet", "--json", report]
        result = subprocess.run(command, capture_output=True, text=True)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 60
        while "malloc-sites: written" not in read(log_path):
            if time.time() > deadline or proc.poll() is not None:
                fail(f"no samples written:\n{read(log_path)[-2000:]}")
            time.sleep(0.1)
        if not os.path.exists(report):
            fail(f"verso-load failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        with open(report) as file:
            figures: dict[str, Any] = json.load(file)
        if figures.get("errors"):
            fail(f"verso-load: {figures['errors']} errors")
    finally:
        stop_server(proc)
    return out, figures, " ".join(command[:-5] + ["--url", "URL", "--quiet", "--json", "report.json"])


# ---- reading the samples ----


class Sample:
    __slots__ = ("tid", "name", "label", "kind", "size", "addresses")

    def __init__(self, tid: int, name: str, label: str, kind: str, size: int, addresses: list[int]):
        self.tid, self.name, self.label, self.kind, self.size, self.addresses = tid, name, label, kind, size, addresses


def parse(path: str) -> tuple[dict[str, int], list[Sample], list[tuple[int, int, int, str]]]:
    header: dict[str, int] = {}
    samples: list[Sample] = []
    maps: list[tuple[int, int, int, str]] = []
    in_maps = False
    with open(path, errors="replace") as file:
        for line in file:
            line = line.rstrip("\n")
            if line == "# maps":
                in_maps = True
            elif in_maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    maps.append((start, end, int(parts[2], 16), parts[5]))
            elif line.startswith("# "):
                key, value = line[2:].split()
                header[key] = int(value)
            elif line:
                tid, name, label, kind, size, frames = line.split("\t")
                samples.append(Sample(int(tid), name, label, kind, int(size), [int(a, 16) for a in frames.split()]))
    return header, samples, maps


def load_segments(path: str) -> list[tuple[int, int, int]]:
    """The PT_LOAD segments of an ELF64 file: (file offset, file size, virtual address)."""
    with open(path, "rb") as file:
        head = file.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return []
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        file.seek(phoff)
        table = file.read(phentsize * phnum)
    segments = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type == 1:
            segments.append((p_offset, p_filesz, p_vaddr))
    return segments


# ---- symbolizing ----


class Frame(NamedTuple):
    """One logical frame (a function, or a function inlined into it)."""

    name: str  # demangled --simplified
    where: str  # file:line, or ""
    module: str  # the file's name
    origin: str  # verso, a package, a C library, runtime (or unknown)


def symbolize(samples: list[Sample], maps: list[tuple[int, int, int, str]], binary: str) -> dict[int, list[Frame]]:
    """Each return address (less one, inside the call) as its logical frames (inlined ones included), innermost first."""
    wanted: set[int] = set()
    for s in samples:
        wanted.update(s.addresses)
    per_module: dict[str, dict[int, int]] = collections.defaultdict(dict)  # path -> {vaddr: address}
    segments: dict[str, list[tuple[int, int, int]]] = {}
    raw: dict[int, list[tuple[str, str, str]]] = {}  # address -> [(linkage name, where, path)]
    for address in wanted:
        pc = address - 1
        for start, end, offset, path in maps:
            if start <= pc < end:
                if path not in segments:
                    segments[path] = load_segments(path) if os.path.exists(path) else []
                file_offset = pc - start + offset
                vaddr = next((file_offset - p_offset + p_vaddr for p_offset, p_filesz, p_vaddr in segments[path]
                              if p_offset <= file_offset < p_offset + p_filesz), None)
                if vaddr is None:
                    raw[address] = [(f"?{address:x}", "", path)]
                else:
                    per_module[path][vaddr] = address
                break
        else:
            raw[address] = [(f"?{address:x}", "", "?")]
    for path, addresses in per_module.items():
        dynamic = None
        result = subprocess.run(["llvm-symbolizer", "--obj", path, "--inlines", "--functions=linkage", "--output-style=JSON",
                                 "--no-demangle"],
                                input="\n".join(f"0x{v:x}" for v in sorted(addresses)), capture_output=True, text=True)
        for line in result.stdout.splitlines():
            line = line.strip()
            if not line:
                continue
            for entry in json.loads(line) if line.startswith("[") else [json.loads(line)]:
                vaddr = int(entry["Address"], 16)
                found = addresses.get(vaddr)
                if found is None:
                    continue
                logical = []
                for symbol in entry.get("Symbol", []):
                    function = symbol.get("FunctionName") or ""
                    where = f"{symbol.get('FileName', '')}:{symbol.get('Line', 0)}" if symbol.get("FileName") else ""
                    if not function:  # a stripped library: an exported symbol that contains it, if any
                        if dynamic is None:
                            dynamic = exported(path)
                        function = next((name for value, size, name in dynamic if value <= vaddr < value + size),
                                        f"{os.path.basename(path).split('.so')[0]}+{vaddr:x}")
                    logical.append((function, where, path))
                raw[found] = logical or [(f"?{vaddr:x}", "", path)]
    names = sorted({f for fs in raw.values() for f, _, _ in fs})
    simple = demangle(names, simplified=True)
    return {a: [Frame(simple.get(f, f), w, os.path.basename(p), origin(f, w, p, binary)) for f, w, p in fs]
            for a, fs in raw.items()}


def exported(path: str) -> list[tuple[int, int, str]]:
    result = subprocess.run(["nm", "-D", "-S", "--defined-only", path], capture_output=True, text=True)
    table = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "TtWw":
            table.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    return table


def demangle(names: list[str], simplified: bool) -> dict[str, str]:
    if not names:
        return {}
    result = subprocess.run(["swift", "demangle", *(["--simplified"] if simplified else [])], input="\n".join(names),
                            capture_output=True, text=True)
    out = result.stdout.splitlines()
    table = dict(zip(names, out)) if result.returncode == 0 and len(out) == len(names) else {}
    missing = [n for n in names if n.startswith("_Z") and table.get(n, n) == n]
    if missing:  # C++ names (the Swift runtime) through c++filt
        cpp = subprocess.run(["c++filt"], input="\n".join(missing), capture_output=True, text=True)
        lines = cpp.stdout.splitlines()
        if len(lines) == len(missing):
            table.update(zip(missing, lines))
    return table


# ---- classifying frames ----

RUNTIME_MODULES = {"Swift", "_Concurrency", "Synchronization", "Foundation", "FoundationEssentials", "Dispatch", "Glibc",
                   "_StringProcessing", "__C", "SwiftShims"}
RUNTIME_LIBRARIES = ("libswift", "libdispatch", "libFoundation", "libc.so", "libstdc++", "libBlocksRuntime", "libgcc_s",
                     "ld-linux", "malloc_count")


def swift_module(mangled: str) -> str | None:
    """The module a Swift symbol's first context belongs to ($s11VersoServer6OutboxC... is VersoServer;
    $sSD... a Swift.Dictionary, so Swift, also for its specializations)."""
    m = re.match(r"^_?\$[sS](.*)", mangled)
    if not m:
        return None
    rest = m.group(1)
    if rest[:1] in ("S", "s"):
        return "__C" if rest.startswith("So") else "Swift"
    digits = re.match(r"^(\d+)", rest)
    if digits:
        length = int(digits.group(1))
        return rest[len(digits.group(1)):len(digits.group(1)) + length]
    return None


def origin(mangled: str, where: str, path: str, binary: str) -> str:
    """verso, a package's module (NIOCore, Hummingbird...), a C library (libsqlite3), or runtime."""
    module = swift_module(mangled)
    if module:
        if module.startswith("Verso") or module in ("verso_server",):
            return "verso"
        return "runtime" if module in RUNTIME_MODULES else module
    base = os.path.basename(path)
    if base.startswith(RUNTIME_LIBRARIES) or mangled.startswith("_ZN5swift") or mangled.startswith("swift_"):
        return "runtime"
    if os.path.realpath(path) == os.path.realpath(binary):
        if "/Sources/" in where and "/checkouts/" not in where:
            return "verso"
        package = re.search(r"/checkouts/([^/]+)/", where)
        return package.group(1) if package else "binary"
    return base.split(".so")[0]


ALLOCATOR = re.compile(r"^(malloc|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|"
                       r"swift_slowAlloc|swift_allocObject|_swift_allocObject_|swift::swift_slowAlloc|swift_allocBox|"
                       r"swift::TaskAllocator|operator new)\b")


def is_allocator(frame: Frame) -> bool:
    return frame.module.startswith("malloc_count") or bool(ALLOCATOR.match(frame.name))


def short(function: str, limit: int = 110) -> str:
    f = function.replace("closure #", "cl#").replace("partial apply for ", "pa ").replace("merged ", "")
    f = re.sub(r"\s+", " ", f)
    return f if len(f) <= limit else f[: limit - 1] + "…"


def where_short(where: str) -> str:
    if not where:
        return ""
    where = re.sub(r".*/checkouts/", "", where)
    where = re.sub(r".*/Sources/", "", where)
    where = re.sub(r".*/swift/stdlib/public/", "stdlib/", where)
    return where


def thread_kind(s: Sample) -> str:
    if s.name.startswith("NIO-"):
        return "NIO event loop threads"
    if s.label.startswith("verso.sqlite.writer"):
        return "SQLite writer queue"
    if s.label.startswith("verso."):
        return f"dispatch queue {s.label}"
    if s.label == "Swift global concurrent queue":
        return "cooperative pool"
    return f"other ({s.name or '?'} / {s.label})"


# ---- reporting ----


def table(title: str, counter: "collections.Counter[Any]", total: int, scale: float, top: int, render: Callable[[Any], str],
          what: str = "site") -> None:
    print(f"\n### {title}\n")
    print(f"| # | allocs/ack | share | {what} |")
    print("| ---: | ---: | ---: | --- |")
    for i, (key, n) in enumerate(counter.most_common(top), 1):
        print(f"| {i} | {n * scale:.2f} | {100 * n / total:.1f} % | {render(key)} |")
    rest = sum(counter.values()) - sum(n for _, n in counter.most_common(top))
    if rest:
        print(f"| | {rest * scale:.2f} | {100 * rest / total:.1f} % | (the rest, {len(counter) - top} more) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.path.join(ROOT, ".build/release/verso-server"))
    parser.add_argument("--load", default=os.path.join(ROOT, ".build/release/verso-load"))
    parser.add_argument("--every", type=int, default=64, help="sample every Nth allocation (default 64)")
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--stacks", type=int, default=15)
    parser.add_argument("--keep", help="also copy the raw samples file here")
    parser.add_argument("--samples", help="analyse this samples file (and --acks) instead of running")
    parser.add_argument("--acks", type=int, help="with --samples: the acks of that run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="verso-allocation-sites.") as folder:
        if args.samples:
            path, acks, command = args.samples, args.acks or 1, "(from --samples)"
        else:
            path, figures, command = run(args.server, args.load, args.every, args.duration, folder, args.connections)
            acks = int(figures["ops"])
            if args.keep:
                with open(args.keep, "w") as file:
                    file.write(read(path))
        header, samples, maps = parse(path)
        frames = symbolize(samples, maps, args.server)

    every = header["every"]
    counted = header["count_stop"] - header["count_start"]
    n = len(samples)
    scale = every / acks
    print(f"server: {args.server}\nload: {command}\n")
    print(f"acks: {acks:,}; allocations while sampling: {counted:,} = **{counted / acks:.2f} per ack** (counted); "
          f"samples: {n:,} (every {every}, {header.get('lost', 0)} lost) x {every} / acks = {n * scale:.2f} per ack (sampled)")

    by_thread: collections.Counter[str] = collections.Counter(thread_kind(s) for s in samples)
    table("By thread", by_thread, n, scale, 20, lambda k: k, "thread")

    sites: collections.Counter[tuple[Frame, Frame | None]] = collections.Counter()
    whats: dict[tuple[Frame, Frame | None], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    threads: dict[tuple[Frame, Frame | None], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    sizes: dict[tuple[Frame, Frame | None], collections.Counter[int]] = collections.defaultdict(collections.Counter)
    verso_functions: collections.Counter[str] = collections.Counter()
    verso_lines: collections.Counter[Frame] = collections.Counter()
    stacks: collections.Counter[tuple[Frame, ...]] = collections.Counter()
    for s in samples:
        logical = [f for a in s.addresses for f in frames.get(a, [Frame(f"?{a:x}", "", "?", "unknown")])]
        i = 0
        while i < len(logical) and is_allocator(logical[i]):
            i += 1
        past = logical[i:]
        allocator = ("malloc" if logical[i - 1].module.startswith("malloc_count") else logical[i - 1].name.split("(")[0]) if i else "?"
        what = (short(past[0].name, 60) if past else "?") + f" [{allocator}]"
        site = next((f for f in past if f.origin != "runtime"), past[0] if past else Frame("?", "", "?", "unknown"))
        if site.module.startswith("lib") and site.origin not in ("verso", "runtime"):
            # a C library (its internal functions may be unnamed): its named frames, outermost first
            chain = []
            for f in past[past.index(site):]:
                if f.module != site.module:
                    break
                if "+" not in f.name and f.name not in chain:
                    chain.append(f.name)
            site = site._replace(name=" > ".join(reversed(chain[-5:])) or site.name)
        verso = next((f for f in past if f.origin == "verso"), None)
        key = (site, verso if verso is not site else None)
        sites[key] += 1
        sizes[key][s.size] += 1
        whats[key][what] += 1
        threads[key][thread_kind(s)] += 1
        if verso:
            verso_lines[verso] += 1
            verso_functions[verso.name] += 1
        else:
            verso_functions["(no Verso frame)"] += 1
        stacks[tuple(f for f in past if f.origin != "runtime")[:8] or tuple(past[:4])] += 1

    def render_site(key: tuple[Frame, Frame | None]) -> str:
        site, verso = key
        text = f"`{short(site.name)}` {where_short(site.where)} [{site.origin}]"
        if verso:
            text += f" ← `{short(verso.name, 70)}` {where_short(verso.where)}"
        top_what = ", ".join(f"{w} ({c})" for w, c in whats[key].most_common(2))
        thread = ", ".join(f"{t} {c}" for t, c in threads[key].most_common(2))
        common = ", ".join(f"{size} B" for size, _ in sizes[key].most_common(3))
        return f"{text} — via {top_what}; {thread}; sizes {common}"

    table("By site (innermost frame in Verso or a package / C library; ← its innermost Verso caller)", sites, n, scale,
          args.top, render_site)
    for kind, _ in by_thread.most_common():
        per_thread = collections.Counter({key: counts[kind] for key, counts in threads.items() if counts[kind]})
        if sum(per_thread.values()) * scale >= 0.5:
            table(f"Sites on {kind}", per_thread, n, scale, 12,
                  lambda k: f"`{short(k[0].name, 90)}` {where_short(k[0].where)}" + (f" ← `{short(k[1].name, 60)}` {where_short(k[1].where)}" if k[1] else ""))
    table("By innermost Verso function", verso_functions, n, scale, args.top, lambda k: f"`{short(k)}`")
    table("By innermost Verso line", verso_lines, n, scale, args.top,
          lambda k: f"{where_short(k.where)} `{short(k.name, 80)}`")

    print(f"\n### Top {args.stacks} stacks (non-runtime frames, innermost first, at most 8)\n")
    for i, (stack, count) in enumerate(stacks.most_common(args.stacks), 1):
        print(f"{i}. {count * scale:.2f}/ack ({100 * count / n:.1f} %)")
        for f in stack:
            print(f"    {short(f.name, 120)}  {where_short(f.where)} [{f.origin}]")


if __name__ == "__main__":
    main()
