#!/usr/bin/env bash
# N verso-server processes over one fresh PostgreSQL 15 (fsync on), `verso-load cas` spread over
# them, and where the CPU went: prints one line with the acknowledged writes per second, the
# p99, and the server CPU per write of the Verso servers and of PostgreSQL (postmaster and
# backends) apart, from /proc/PID/stat before and after the measured run.
# For side-by-side runs of two builds (--server-binary), e.g.:
#   for run in 1 2 3; do for b in old new; do bench/pg_servers.sh --servers 3 --server-binary /tmp/verso-$b; done; done
# Needs root (initdb runs as the postgres user through runuser) and postgresql-15. A benchmark,
# not a test: .ci/run does not run it.
set -euo pipefail

servers=1
duration=8
connections=64
keys=10000
binary=.build/release/verso-server
load=.build/release/verso-load
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) servers="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --keys) keys="$2"; shift 2 ;;
        --server-binary) binary="$2"; shift 2 ;;
        --load-binary) load="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "pg_servers.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || { echo "pg_servers.sh: needs postgresql-15" >&2; exit 1; }
for file in "$binary" "$load"; do
    [ -x "$file" ] || { echo "pg_servers.sh: no $file (swift build -c release first)" >&2; exit 1; }
done

W="$(mktemp -d /tmp/verso-pg-servers.XXXXXX)"
chmod 755 "$W"
mkdir "$W/pg"
chown postgres: "$W/pg"
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$W/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 30000))
runuser -u postgres -- "$pgbin/initdb" -D "$W/pg/data" --auth=trust -U postgres -E UTF8 >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w \
    -o "-p $port -k $W/pg -c listen_addresses=127.0.0.1" start >/dev/null
pg_pid="$(head -n 1 "$W/pg/data/postmaster.pid")"
"$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -c 'CREATE DATABASE verso'

urls=()
for i in $(seq "$servers"); do
    mkdir "$W/s$i"
    "$binary" --port 0 --data "$W/s$i" --store "postgres://postgres@127.0.0.1:$port/verso" >"$W/s$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq "$servers"); do
    url=""
    for _ in $(seq 300); do
        url="$(grep -o 'verso\.url=ws://[^ ]*' "$W/s$i.log" | head -n 1 | cut -d= -f2 || true)"
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { cat "$W/s$i.log" >&2; exit 1; }
    urls+=(--url "$url")
done
ticks() {  # utime + stime of the given processes, in clock ticks
    local total=0 pid fields
    for pid in "$@"; do
        read -ra fields < <(cut -d')' -f2 "/proc/$pid/stat")
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
postgres_processes() { echo "$pg_pid" $(pgrep -P "$pg_pid"); }

"$load" cas "${urls[@]}" --connections "$connections" --keys "$keys" --duration 2 --quiet >/dev/null
verso_before="$(ticks "${pids[@]}")"
pg_before="$(ticks $(postgres_processes))"
"$load" cas "${urls[@]}" --connections "$connections" --keys "$keys" --duration "$duration" \
    --json "$W/load.json" --quiet >/dev/null
verso_after="$(ticks "${pids[@]}")"
pg_after="$(ticks $(postgres_processes))"
python3 - "$W/load.json" $((verso_after - verso_before)) $((pg_after - pg_before)) "$(getconf CLK_TCK)" \
    "$servers" "$(basename "$binary")" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
verso, postgres, hz = (int(value) for value in sys.argv[2:5])
ops = report["ops"]
print(
    f"{sys.argv[5]} server(s) {sys.argv[6]}: {report['opsPerSecond']:,.0f} writes/s, p99 {report['p99'] / 1000:.1f} ms, "
    f"server CPU per write: Verso {verso / hz / ops * 1e6:.1f} µs + PostgreSQL {postgres / hz / ops * 1e6:.1f} µs; "
    f"{report['errors']} errors"
)
PY
