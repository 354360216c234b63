/**
 * The cron Lua scripts (keys in src/broker/keys.ts). Each works on the keys of one queue, one slot.
 */

/**
 * tick: claim ticks and enqueue their jobs in one atomic step, so a ticker killed half-way either
 * enqueued a tick and recorded it as handled, or did neither (and another ticker will).
 * The last tick handled only moves forward: a ticker whose plan is stale (it read `last` before
 * another ticker moved it) enqueues only ticks newer than what Redis holds now. A tick later than
 * the Redis clock is refused, so a ticker whose own clock runs ahead cannot fire early.
 * `last` is set (SET NX, to the Redis time) by the first ticker that sees a cron, so a new cron does
 * not run for ticks before that. Should it be missing here, it is set to newLast and nothing is sent.
 * KEYS: last, stream, priorities, dedup key of tick 1, dedup key of tick 2, ...
 * ARGV: newLast, priority, tick1, body1, tick2, body2, ...
 * Returns: number of jobs enqueued, or -1 when another ticker had already handled these ticks.
 */
export const CRON_TICK = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newLast = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], math.min(newLast, now))
  return 0
end
cur = tonumber(cur)
local sent = 0
local n = (#ARGV - 2) / 2
for i = 1, n do
  local tick = tonumber(ARGV[1 + 2 * i])
  if tick > cur and tick <= now and redis.call('SET', KEYS[3 + i], 'queued', 'NX') then
    redis.call('SADD', KEYS[3], ARGV[2])
    redis.call('XADD', KEYS[2], '*', 'm', ARGV[2 + 2 * i], 'r', '0')
    sent = sent + 1
  end
end
if newLast > cur and newLast <= now then
  redis.call('SET', KEYS[1], newLast)
  return sent
end
return -1
`;

/**
 * run: the overlap lock and the run history of one cron, one round trip per step.
 * mode 'start': take the lock (free, or already held by this same job: a redelivery after a crash)
 *   and record the run as RUNNING (ARGV[5]); if another job holds it, record SKIPPED (ARGV[6]).
 *   A lockTtl of 0 means no lock: the run is recorded and goes ahead.
 * mode 'finish': release the lock if this job still holds it, and record the run (ARGV[5]).
 * The history is a hash of runs plus a zset by start time, trimmed to the newest `cap`.
 * KEYS: lock, runs, order
 * ARGV: mode, jobId, lockTtlMs, runId, runJson, skippedJson ('' for finish), startedAtMs, cap
 * Returns: 1 when the run may go ahead (start) or was recorded (finish); 0 when skipped.
 */
export const CRON_RUN = `
local mode, jobId, ttl, runId = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local score, cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local function record(json)
  redis.call('HSET', KEYS[2], runId, json)
  redis.call('ZADD', KEYS[3], score, runId)
  local extra = redis.call('ZCARD', KEYS[3]) - cap
  if extra > 0 then
    local old = redis.call('ZRANGE', KEYS[3], 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1)
    for i = 1, #old, 500 do
      redis.call('HDEL', KEYS[2], unpack(old, i, math.min(i + 499, #old)))
    end
  end
end
local holder = redis.call('GET', KEYS[1])
if mode == 'start' then
  if ttl <= 0 then
    record(ARGV[5])
    return 1
  end
  if holder and holder ~= jobId then
    record(ARGV[6])
    return 0
  end
  redis.call('SET', KEYS[1], jobId, 'PX', ttl)
  record(ARGV[5])
  return 1
end
if holder == jobId then redis.call('DEL', KEYS[1]) end
record(ARGV[5])
return 1
`;

/**
 * renew: extend a cron's overlap lock while its run goes on, only if this job still holds it (the
 * check and the PEXPIRE in one step, so a lock another job took meanwhile is never stretched).
 * KEYS: lock
 * ARGV: jobId, lockTtlMs
 * Returns: 1 renewed, 0 nobody holds it (expired: left free), -1 another job holds it.
 */
export const CRON_RENEW = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0
`;
