#!/usr/bin/env bash
# Verso side by side with Redis and PostgreSQL on this machine: the same compare-and-set load
# (C connections, K keys, ~100-byte values) against
#   - verso-server (release build) under `verso-load cas`,
#   - Redis 7 running a Lua compare-and-set (bench/cas.lua) under redis-benchmark, AOF off and
#     AOF with appendfsync everysec,
#   - PostgreSQL 15 running django-concurrency's SELECT + UPDATE (bench/django_cas.sql) under
#     pgbench, synchronous_commit off and on,
#   - verso-server over that PostgreSQL (--store), one server and three, under `verso-load cas`
#     spread over them (server CPU: the Verso servers' and PostgreSQL's together),
# each --runs times for --duration seconds, interleaved run by run, then writes the medians as
# a markdown table between the compare.sh markers of BENCHMARKS.md (see its section).
# Starts every server itself on temporary folders and free ports, and stops them on exit.
# A benchmark, not a test: it is not part of .ci/run.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/compare.sh [options]
  --duration SECONDS   measured seconds of each run (default 10)
  --runs N             runs per system, medians reported (default 3)
  --connections C      client connections for every system (default 64)
  --keys K             distinct keys / rows (default 10000)
  --no-build           use the existing .build/release binaries (skip swift build)
  --output FILE        markdown file to update (default BENCHMARKS.md at the repo root)
  -h, --help           this text
Needs root (PostgreSQL's initdb runs as the postgres user through runuser) and installs
redis-server, redis-tools and postgresql-15 with apt-get if they are missing.
EOF
}

invocation="bench/compare.sh${*:+ $*}"
duration=10
runs=3
connections=64
keys=10000
build=1
output=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --keys) keys="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --output) output="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for value in "$runs" "$connections" "$keys"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --runs, --connections and --keys take positive integers" >&2; exit 2; }
done
[[ $duration =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --duration takes whole seconds" >&2; exit 2; }

output="${output:-BENCHMARKS.md}"
[[ $output = /* ]] || output="$PWD/$output"
if [ "$output" = "$PWD/BENCHMARKS.md" ] && [ ! -f "$output" ]; then
    output="$(cd "$(dirname "$0")/.." && pwd)/BENCHMARKS.md"
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
helper=(python3 "$repo/bench/compare_report.py")
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
say() { echo "compare.sh: $*" >&2; }

# What the comparison needs, from Debian's packages.
pgbin=/usr/lib/postgresql/15/bin
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
[ -x "$pgbin/pgbench" ] && [ -x "$pgbin/psql" ] || missing+=(postgresql-15)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
id postgres >/dev/null 2>&1 || { echo "compare.sh: no postgres user (install postgresql-15)" >&2; exit 1; }

W="$(mktemp -d -t verso-compare.XXXXXX)"
chmod 755 "$W"  # the postgres user must reach its data folder below
: >"$W/commands.txt"
: >"$W/results.jsonl"

verso_pids=()
redis_pids=()
pg_started=0
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${verso_pids[@]}" "${redis_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
    done
    if [ "$pg_started" = 1 ]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "$status" = 0 ] || [ "$status" -ge 128 ]; then  # done, or interrupted
        rm -rf "$W"
    else
        # A run failed: keep the logs (not the data) to show what went wrong.
        rm -rf "$W/verso" "$W/verso-normal" "$W/redis" "$W/redis-aof" "$W/pg/data"
        echo "compare.sh: failed; logs kept in $W" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show CMD ARGS...: note a command for the report, quoted so that it can be pasted.
# The ~100-byte value shows as $DATA, defined on the first line.
show() {
    local line="" arg rest
    for arg in "$@"; do
        rest="${arg//"$data"/}"
        if [[ $arg =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then
            line+=" $arg"
        elif [ "$rest" != "$arg" ] && [[ ! $rest =~ [\"\$\`\\] ]]; then
            line+=" \"${arg//"$data"/\$DATA}\""
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    note "${line# }"
}
# note LINE: add a line to the commands of the report, once, with $W for the temporary folder.
note() {
    local line="${1//"$W"/\$W}"
    grep -qxF -- "$line" "$W/commands.txt" || printf '%s\n' "$line" >>"$W/commands.txt"
}
# x CMD ARGS...: note it, then run it.
x() { show "$@"; "$@"; }
cpu() { "${helper[@]}" cpu "$@"; }
TIMEFORMAT='%U %S'  # `time` of each load tool: its user and system CPU seconds
port() { "${helper[@]}" freeport; }
record() { "${helper[@]}" record "$@" >>"$W/results.jsonl"; }

# The same ~100-byte JSON value as verso-load writes ({"p":"xxx…"}, 100 bytes).
data="{\"p\":\"$(printf '%*s' 92 '' | tr ' ' x)\"}"
note "DATA='$data'"

if [ "$build" = 1 ]; then
    say "building release binaries"
    x swift build -c release --product verso-server
    x swift build -c release --product verso-load
fi
for binary in verso-server verso-load; do
    [ -x ".build/release/$binary" ] || { echo "compare.sh: .build/release/$binary missing (run without --no-build)" >&2; exit 1; }
done

# --- Verso ---------------------------------------------------------------------------------
# verso_url: the URLs of a setup (several for servers sharing one store); verso_cpu: the
# processes whose CPU a run of it counts (--tree: with their children, for PostgreSQL's).
declare -A verso_pid verso_url verso_cpu
start_verso() {  # start_verso NAME EXTRA-ARGS...
    local name="$1" url=""
    shift
    mkdir "$W/$name"
    show .build/release/verso-server --port 0 --data "$W/$name" "$@"
    .build/release/verso-server --port 0 --data "$W/$name" "$@" >"$W/$name.log" 2>&1 &
    verso_pids+=($!)
    verso_pid[$name]=$!
    for _ in $(seq 600); do
        url="$(grep -o 'verso\.url=ws://[^ ]*' "$W/$name.log" | head -n 1 | cut -d= -f2 || true)"
        [ -n "$url" ] && break
        kill -0 "${verso_pid[$name]}" 2>/dev/null || { cat "$W/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { echo "compare.sh: verso-server ($name) did not say where it listens" >&2; exit 1; }
    verso_url[$name]="$url"
    verso_cpu[$name]="${verso_pid[$name]}"
}
start_verso verso
start_verso verso-normal --durability normal

alive() {  # alive PID NAME LOG: fail with the log's tail if the server has gone
    kill -0 "$1" 2>/dev/null && return 0
    local status=0
    wait "$1" 2>/dev/null || status=$?  # 127 for PostgreSQL, which is not our child
    echo "compare.sh: $2 (pid $1) has gone, wait status $status; the end of its log:" >&2
    tail -n 20 "$3" >&2
    exit 1
}
verso_run() {  # verso_run NAME SECONDS [RUN LABEL]
    local name="$1" before after url urls=()
    for url in ${verso_url[$name]}; do urls+=(--url "$url"); done
    alive "${verso_pid[$name]}" "verso-server ($name)" "$W/$name.log"
    before="$(cpu ${verso_cpu[$name]})"
    { time x .build/release/verso-load cas "${urls[@]}" --connections "$connections" --keys "$keys" \
        --duration "$2" --server-pid "${verso_pid[$name]}" --json "$W/$name.json" --quiet >"$W/$name.out" 2>"$W/client.err"; } 2>"$W/client.time"
    alive "${verso_pid[$name]}" "verso-server ($name)" "$W/$name.log"
    after="$(cpu ${verso_cpu[$name]})"
    [ $# -lt 3 ] || record verso "$W/$name.json" --system "$name" --run "$3" \
        --label "$4" --cpu-before "$before" --cpu-after "$after" \
        --client-time "$W/client.time"
}

# --- Redis ---------------------------------------------------------------------------------
declare -A redis_port redis_pid redis_sha redis_rate
start_redis() {  # start_redis NAME EXTRA-ARGS...
    local name="$1" p
    shift
    p="$(port)"
    mkdir "$W/$name"
    show redis-server --port "$p" --bind 127.0.0.1 --dir "$W/$name" --save '' "$@"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$W/$name" --save '' "$@" >"$W/$name.log" 2>&1 &
    redis_pids+=($!)
    redis_pid[$name]=$!
    redis_port[$name]=$p
    for _ in $(seq 300); do
        [ "$(redis-cli -p "$p" ping 2>/dev/null || true)" = PONG ] && break
        kill -0 "${redis_pid[$name]}" 2>/dev/null || { cat "$W/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    redis_sha[$name]="$(redis-cli -p "$p" SCRIPT LOAD "$(cat bench/cas.lua)")"
    note "redis-cli -p $p SCRIPT LOAD \"\$(cat bench/cas.lua)\""
    x redis-cli -p "$p" EVAL "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('HSET', string.format('rec:%012d', i), 'data', ARGV[2], 'version', 0) end return redis.call('DBSIZE')" 0 "$keys" "$data" >/dev/null
}
redis_versions() {  # the sum of every record's version: the writes that took effect
    redis-cli -p "${redis_port[$1]}" EVAL "local s = 0 for i = 0, tonumber(ARGV[1]) - 1 do s = s + tonumber(redis.call('HGET', string.format('rec:%012d', i), 'version')) end return s" 0 "$keys"
}
redis_run() {  # redis_run NAME REQUESTS [RUN LABEL]
    local name="$1" requests="$2" before after v0 v1
    alive "${redis_pid[$name]}" "redis-server ($name)" "$W/$name.log"
    v0="$(redis_versions "$name")"
    before="$(cpu "${redis_pid[$name]}")"
    { time x redis-benchmark -h 127.0.0.1 -p "${redis_port[$name]}" -c "$connections" -r "$keys" -n "$requests" --csv \
        EVALSHA "${redis_sha[$name]}" 1 'rec:__rand_int__' "$data" -1 >"$W/$name.csv" 2>"$W/client.err"; } 2>"$W/client.time"
    alive "${redis_pid[$name]}" "redis-server ($name)" "$W/$name.log"
    after="$(cpu "${redis_pid[$name]}")"
    v1="$(redis_versions "$name")"
    # The next run's request count: this run's rate times the duration.
    redis_rate[$name]="$(tail -n 1 "$W/$name.csv" | awk -F'","' '{ print int($(NF - 6)) }')"
    [ $# -lt 3 ] || record redis "$W/$name.csv" --system "$name" --run "$3" --label "$4" --ops "$requests" \
        --applied "$((v1 - v0))" --cpu-before "$before" --cpu-after "$after" --client-time "$W/client.time"
}
start_redis redis --appendonly no
start_redis redis-aof --appendonly yes --appendfsync everysec

# --- PostgreSQL ----------------------------------------------------------------------------
pg_port="$(port)"
mkdir "$W/pg"
chown postgres: "$W/pg"
x runuser -u postgres -- "$pgbin/initdb" -D "$W/pg/data" --auth=trust -U postgres -E UTF8 >"$W/initdb.log"
x runuser -u postgres -- "$pgbin/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w \
    -o "-p $pg_port -k $W/pg -c listen_addresses=127.0.0.1" start >/dev/null
pg_started=1
pg_pid="$(head -n 1 "$W/pg/data/postmaster.pid")"
psql() { "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
show "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres \
    -c "CREATE TABLE records (id integer PRIMARY KEY, data text NOT NULL, version integer NOT NULL)" \
    -c "INSERT INTO records SELECT g, '$data', 0 FROM generate_series(1, $keys) g" -c "VACUUM ANALYZE records"
psql -c "CREATE TABLE records (id integer PRIMARY KEY, data text NOT NULL, version integer NOT NULL)" \
    -c "INSERT INTO records SELECT g, '$data', 0 FROM generate_series(1, $keys) g" -c "VACUUM ANALYZE records"

# Verso over this PostgreSQL: one server, and three sharing one database.
psql -c "CREATE DATABASE verso1" -c "CREATE DATABASE verso3"
note "$pgbin/psql -h 127.0.0.1 -p $pg_port -U postgres -c 'CREATE DATABASE verso1' -c 'CREATE DATABASE verso3'"
start_verso verso-pg1 --store "postgres://postgres@127.0.0.1:$pg_port/verso1"
verso_cpu[verso-pg1]="${verso_pid[verso-pg1]} $pg_pid --tree"
for member in a b c; do start_verso "verso-pg3$member" --store "postgres://postgres@127.0.0.1:$pg_port/verso3"; done
verso_pid[verso-pg3]="${verso_pid[verso-pg3a]}"
verso_url[verso-pg3]="${verso_url[verso-pg3a]} ${verso_url[verso-pg3b]} ${verso_url[verso-pg3c]}"
verso_cpu[verso-pg3]="${verso_pid[verso-pg3a]} ${verso_pid[verso-pg3b]} ${verso_pid[verso-pg3c]} $pg_pid --tree"
ln -s "$W/verso-pg3a.log" "$W/verso-pg3.log"  # where alive looks when the set fails

pg_run() {  # pg_run on|off SECONDS [RUN LABEL]
    local sync="$1" seconds="$2" before after v0 v1 setting
    setting="$(PGOPTIONS="-c synchronous_commit=$sync" psql -c 'SHOW synchronous_commit')"
    [ "$setting" = "$sync" ] || { echo "compare.sh: synchronous_commit is $setting, not $sync" >&2; exit 1; }
    rm -f "$W"/pglog*
    v0="$(psql -c 'SELECT sum(version) FROM records')"
    alive "$pg_pid" postgres "$W/pg/server.log"
    before="$(cpu "$pg_pid" --tree)"
    show env PGOPTIONS="-c synchronous_commit=$sync" "$pgbin/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -n \
        -c "$connections" -j 2 -T "$seconds" -M prepared -D keys="$keys" -D data="$data" -f bench/django_cas.sql \
        -l --log-prefix="$W/pglog" postgres
    { time PGOPTIONS="-c synchronous_commit=$sync" "$pgbin/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -n \
        -c "$connections" -j 2 -T "$seconds" -M prepared -D keys="$keys" -D data="$data" -f bench/django_cas.sql \
        -l --log-prefix="$W/pglog" postgres >"$W/pgbench.out" 2>&1; } 2>"$W/client.time" || { cat "$W/pgbench.out" >&2; exit 1; }
    # The backends leave when pgbench does; wait until the postmaster has reaped them.
    for _ in $(seq 100); do
        [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")" = 1 ] && break
        sleep 0.1
    done
    alive "$pg_pid" postgres "$W/pg/server.log"
    after="$(cpu "$pg_pid" --tree)"
    v1="$(psql -c 'SELECT sum(version) FROM records')"
    [ $# -lt 3 ] || record pgbench "$W/pglog" --out "$W/pgbench.out" --system "pg-$sync" --run "$3" --label "$4" \
        --applied "$((v1 - v0))" --cpu-before "$before" --cpu-after "$after" --client-time "$W/client.time"
}

# --- The runs, interleaved so that a change in the machine's load hits every system alike ---
label_verso="Verso \`cas\` (durability full: fsync per group commit; permessage-deflate)"
label_verso_normal="Verso \`cas\` (durability normal: no fsync per commit; permessage-deflate)"
label_redis="Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) Lua CAS, AOF off"
label_redis_aof="Redis Lua CAS, AOF appendfsync everysec"
label_pg_off="PostgreSQL $("$pgbin/postgres" --version | awk '{ print $3 }') SELECT + UPDATE, synchronous_commit=off"
label_pg_on="PostgreSQL SELECT + UPDATE, synchronous_commit=on (fsync)"
label_verso_pg1="Verso \`cas\` over that PostgreSQL (\`--store\`), 1 server (server CPU: Verso + PostgreSQL)"
label_verso_pg3="Verso \`cas\` over that PostgreSQL, 3 servers, connections spread over them (server CPU: Verso + PostgreSQL)"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
say "warm-up: 2 s each"
verso_run verso 2
verso_run verso-normal 2
redis_run redis 40000
redis_run redis-aof 40000
pg_run off 2
pg_run on 2
verso_run verso-pg1 2
verso_run verso-pg3 2
for run in $(seq "$runs"); do
    say "run $run of $runs: Verso, durability full"
    verso_run verso "$duration" "$run" "$label_verso"
    say "run $run of $runs: Verso, durability normal"
    verso_run verso-normal "$duration" "$run" "$label_verso_normal"
    say "run $run of $runs: Redis, AOF off"
    rate="${redis_rate[redis]}"
    redis_run redis "$((rate * duration))" "$run" "$label_redis"
    say "run $run of $runs: Redis, AOF everysec"
    rate="${redis_rate[redis-aof]}"
    redis_run redis-aof "$((rate * duration))" "$run" "$label_redis_aof"
    say "run $run of $runs: PostgreSQL, synchronous_commit=off"
    pg_run off "$duration" "$run" "$label_pg_off"
    say "run $run of $runs: PostgreSQL, synchronous_commit=on"
    pg_run on "$duration" "$run" "$label_pg_on"
    say "run $run of $runs: Verso over PostgreSQL, 1 server"
    verso_run verso-pg1 "$duration" "$run" "$label_verso_pg1"
    say "run $run of $runs: Verso over PostgreSQL, 3 servers"
    verso_run verso-pg3 "$duration" "$run" "$label_verso_pg3"
done

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
versions="Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2), $("$pgbin/postgres" --version | sed 's/^postgres (PostgreSQL) /PostgreSQL /'), $(swift --version 2>/dev/null | grep -o 'Swift version [0-9.]*' | head -n 1 | sed 's/ version//')"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift bench || echo ' + uncommitted changes')"
"${helper[@]}" write "$W/results.jsonl" "$output" --date "$started" --commit "$commit" --invocation "$invocation" \
    --versions "$versions" --load "$load_before before the runs, $load_after after" --commands "$W/commands.txt" --lua bench/cas.lua --sql bench/django_cas.sql \
    --runs "$runs" --duration "$duration" --connections "$connections" --keys "$keys" --value-bytes "${#data}"
say "wrote the table into $output"
