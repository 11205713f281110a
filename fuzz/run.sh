#!/usr/bin/env bash
# Runs one libFuzzer target for a while: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is one of FuzzJSON, FuzzRequest, FuzzMergePatch, FuzzInflate, FuzzFrameDecoder (or
# "build" to only build them all). Builds the fuzz package first when needed (incremental). The
# committed seed corpus (fuzz/corpus/TARGET) is copied to a scratch folder that the run may grow,
# so the committed corpus stays as it is. On a crash or a broken invariant the input is kept as
# fuzz/crashes/TARGET/crash-<sha1> (replay: fuzz/.build/release/TARGET that-file) and the exit
# code is non-zero. libFuzzer's full output goes to fuzz/logs/TARGET.log; the last lines (the
# final stats, or the crash report) are printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
targets=(FuzzJSON FuzzRequest FuzzMergePatch FuzzInflate FuzzFrameDecoder)

usage() { echo "usage: $0 TARGET|build SECONDS [libFuzzer flags...]  (targets: ${targets[*]})" >&2; exit 2; }
[ $# -ge 1 ] || usage
target="$1"; shift
if [ "$target" != build ]; then
    [ $# -ge 1 ] || usage
    seconds="$1"; shift
    [[ "$seconds" =~ ^[0-9]+$ ]] || usage
    [[ " ${targets[*]} " == *" $target "* ]] || usage
fi

# --sanitize=fuzzer lets SwiftPM link libFuzzer's main instead of the target's; the -Xswiftc
# flag comes after it and wins, because swiftc keeps only the last -sanitize= it is given
# (`--sanitize=fuzzer --sanitize=address` would silently build without coverage).
swift build -c release --package-path "$here" \
    --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address \
    2>&1 | grep --line-buffered -vE "warning: Cannot export local symbol" >&2
[ "$target" = build ] && exit 0

binary="$here/.build/release/$target"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/verso-fuzz-$target.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/corpus" "$scratch/artifacts"
cp "$here/corpus/$target/"* "$scratch/corpus/"

# Swift's own backtracer would hold the crash up (and the pipe open); libFuzzer reports it.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}"
mkdir -p "$here/logs"
log="$here/logs/$target.log"
echo "$target: fuzzing for ${seconds}s from $(ls "$scratch/corpus" | wc -l) seeds (log: fuzz/logs/$target.log)" >&2
status=0
"$binary" "$scratch/corpus" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$scratch/artifacts/" "$@" >"$log" 2>&1 || status=$?
if [ "$status" -eq 0 ]; then
    grep -E "^INFO: Loaded|INITED|DONE|^stat::|^Done " "$log" >&2 || true
else
    tail -n 60 "$log" >&2
fi

if compgen -G "$scratch/artifacts/*" >/dev/null; then
    mkdir -p "$here/crashes/$target"
    cp "$scratch/artifacts/"* "$here/crashes/$target/"
    echo "$target: FAILED: input kept in fuzz/crashes/$target/: $(ls "$scratch/artifacts" | tr '\n' ' ')" >&2
    [ "$status" -ne 0 ] || status=1
elif [ "$status" -ne 0 ]; then
    echo "$target: libFuzzer exited with status $status" >&2
fi
exit "$status"
