-- Compare-and-set of one record (a hash with fields data and version), as bench/compare.sh runs
-- it under redis-benchmark: EVALSHA <sha> 1 <key> <data> <expected version>.
-- Reads the version, compares it with the expected one, writes data and version + 1.
-- An expected version of -1 means "the version just read": redis-benchmark cannot carry a
-- version from one reply to the next request, so it always sends -1 (see BENCHMARKS.md).
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[2])
if expected ~= -1 and current ~= expected then
    return {0, current}
end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', current + 1)
return {1, current + 1}
