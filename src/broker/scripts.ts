/**
 * The Lua scripts: only the moves that must be atomic. Everything else uses plain commands.
 * Each script works on the keys of one queue (one hash tag). Time comes from Redis (TIME), so
 * workers with skewed clocks agree on when a delayed message is due. The leases' scripts are in
 * lease_scripts.ts; the read-only ones of the operator's views (counts, finding a job) in
 * browse_scripts.ts. All but history.ts's are defined on the connection by defineScripts (connection.ts).
 */

/**
 * read: one round trip that (1) moves due delayed messages to their streams, (2) optionally reclaims
 * entries idle longer than the visibility timeout from dead consumers, (3) reads new entries,
 * highest priority first, creating the consumer group on first use. A reclaimed entry is handed out
 * with one more field, 'l': the claims on it lost so far (its delivery count - 1), which the retries
 * middleware uses to stop a message that keeps killing its workers.
 * With count 0 it only does (1) and reports the levels: a queue with one level is then read with a
 * plain XREADGROUP pipelined after it, because handing entries through Lua tables cost Redis about
 * 3 us per entry, more than the XREADGROUP itself (see RedisBroker.read).
 * A reclaim that takes any entry counts one more on the queue's reclaims counter (see ACK).
 * KEYS: priorities, delayed, reclaims
 * ARGV: streamPrefix, group, consumer, count, reclaimIdleMs (0 = skip), moveLimit
 * Returns: { nextDueMs | -1, levels, reclaims, stream1, entries1, stream2, entries2, ... } (levels:
 * how many priority levels the queue has; reclaims: the counter after this read; entries as
 * XREADGROUP gives them)
 */
export const READ = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local count, reclaimIdle, moveLimit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, moveLimit)
for _, member in ipairs(due) do
  local prio, retries, body = string.match(member, '^(-?%d+)|(%d+)|(.*)$')
  if prio then
    redis.call('SADD', KEYS[1], prio)
    redis.call('XADD', prefix .. prio, '*', 'm', body, 'r', retries)
  else
    redis.call('XADD', prefix .. '0', '*', 'm', member, 'r', '0')
  end
  redis.call('ZREM', KEYS[2], member)
end

-- Level 0 is always read: it is the default, and where foreign writers put entries.
redis.call('SADD', KEYS[1], '0')
local prios = redis.call('SMEMBERS', KEYS[1])
table.sort(prios, function(a, b) return tonumber(a) > tonumber(b) end)

local out = {}
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
out[1] = next[2] and tonumber(next[2]) or -1
out[2] = #prios
out[3] = 0
local reclaimed = 0

local function ensureGroup(stream)
  local ok = pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  return ok
end

for _, prio in ipairs(prios) do
  if count <= 0 then break end
  local stream = prefix .. prio
  local entries = {}
  if reclaimIdle > 0 then
    local ok, res = pcall(redis.call, 'XAUTOCLAIM', stream, group, consumer, reclaimIdle, '0-0', 'COUNT', count)
    if ok then
      reclaimed = reclaimed + #res[2]
      for _, e in ipairs(res[2]) do
        if type(e[2]) == 'table' then
          local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
          if p[1] then
            table.insert(e[2], 'l')
            table.insert(e[2], tostring(tonumber(p[1][4]) - 1))
          end
        end
        table.insert(entries, e)
      end
    else
      ensureGroup(stream)
    end
  end
  if count - #entries > 0 then
    local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #entries, 'STREAMS', stream, '>')
    if not ok then
      ensureGroup(stream)
      res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #entries, 'STREAMS', stream, '>')
    end
    if res then
      for _, e in ipairs(res[1][2]) do table.insert(entries, e) end
    end
  end
  if #entries > 0 then
    count = count - #entries
    table.insert(out, stream)
    table.insert(out, entries)
  end
end
if reclaimed > 0 then out[3] = redis.call('INCR', KEYS[3]) else out[3] = tonumber(redis.call('GET', KEYS[3]) or '0') end
return out
`;

/**
 * enqueue: send one message with a jobId (dedup) and/or a delay. Plain sends use XADD directly.
 * The job's record is written only when the message is really sent, so a duplicate send leaves the
 * first job's record (and status) alone.
 * KEYS: stream, delayed, priorities, dedupKey, recordKey (each the queue's `none` key when not used)
 * ARGV: messageJson, priority, delayMs (-1 = now), atMs (-1 = not set), recordJson, holder (the
 *   message's sentAt, kept in the dedup key: see REQUEUE)
 * Returns: 1 when sent, 0 when a job with this id is already known.
 */
export const ENQUEUE = `
local function given(k) return string.sub(k, -6) ~= '}:none' end
local body, prio, delay, at = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if given(KEYS[4]) then
  if redis.call('SET', KEYS[4], ARGV[6], 'NX') == false then return 0 end
end
if given(KEYS[5]) then redis.call('SET', KEYS[5], ARGV[5]) end
redis.call('SADD', KEYS[3], prio)
local due = -1
if at >= 0 then due = at end
if delay >= 0 then
  local t = redis.call('TIME')
  due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay
end
if due >= 0 then
  redis.call('ZADD', KEYS[2], due, prio .. '|0|' .. body)
else
  redis.call('XADD', KEYS[1], '*', 'm', body, 'r', '0')
end
return 1
`;

/**
 * settle: take one entry off its stream and put it somewhere else, atomically, so it is never lost
 * between the two: to the delayed set (retry), to the dead-letter stream, or back to a stream (give
 * back unstarted work, not charged an attempt). The job's record changes in the same step.
 * KEYS: stream, target, dedupKey, recordKey (when the job has a record to touch), running, aborted;
 *       the queue's `none` key in place of each one not used
 * ARGV: group, entryId, mode ('delay'|'dlq'|'stream'), body, retries, delayMs, errorJson, dedupTtlMs,
 *       jobId, recordJson ('' = leave it, or delete it when dead-lettering), recordTtlMs (0 = none),
 *       doneChannel ('' = tell no one), consumer (who must hold the entry), sharded ('1': tell with
 *       SPUBLISH, on a Redis Cluster; absent on a single Redis, which may be older than 7)
 * Returns: 1 when settled; 2 when it was already, by an earlier send of this same call; 0 when this
 * consumer does not hold the entry (any more): nothing changed.
 */
export const SETTLE = `
local function given(k) return string.sub(k, -6) ~= '}:none' end
local group, id, mode, body, retries = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Only the consumer that holds the entry settles it. XACK alone would also take an entry that
-- another consumer reclaimed (and runs now) from under it, or that it already settled: either way
-- the job would run twice or its outcome be overwritten. Do nothing: the lease was lost.
local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
if not p[1] then
  -- Settled already: by this same call, sent again after its connection dropped with the reply
  -- (ioredis resends it) if the record holds what this call writes; else by another worker.
  if given(KEYS[4]) and ARGV[10] ~= '' and redis.call('GET', KEYS[4]) == ARGV[10] then return 2 end
  return 0
end
if p[1][2] ~= ARGV[13] then return 0 end
redis.call('XACK', KEYS[1], group, id)
redis.call('XDEL', KEYS[1], id)
if mode == 'delay' then
  local prio = string.match(KEYS[1], ':(-?%d+)$')
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), prio .. '|' .. retries .. '|' .. body)
elseif mode == 'dlq' then
  redis.call('XADD', KEYS[2], '*', 'm', body, 'r', retries, 'e', ARGV[7], 'at', now)
  if given(KEYS[3]) then
    local ttl = tonumber(ARGV[8])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) else redis.call('DEL', KEYS[3]) end
  end
else
  redis.call('XADD', KEYS[2], '*', 'm', body, 'r', retries)
end
if given(KEYS[4]) then
  local jobId, record, ttl = ARGV[9], ARGV[10], tonumber(ARGV[11])
  redis.call('HDEL', KEYS[5], jobId)
  if mode == 'dlq' then redis.call('SREM', KEYS[6], jobId) end
  if record ~= '' then
    if ttl > 0 then redis.call('SET', KEYS[4], record, 'PX', ttl) else redis.call('SET', KEYS[4], record) end
  elseif mode == 'dlq' then
    redis.call('DEL', KEYS[4])
  end
  if ARGV[12] ~= '' then redis.call(ARGV[14] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[12], cjson.encode({ jobId })) end
end
return 1
`;

/**
 * abort: a queued or delayed job is marked aborted (workers skip it when they read it); a running one
 * stays running until the worker that holds it, told on the abort channel, stops it. A finished job
 * is left alone. Either way the id joins the aborted set, so a worker starting later still knows.
 * KEYS: record, running, aborted
 * ARGV: jobId, abortChannel, doneChannel, queue, sharded ('1': the done channel with SPUBLISH, as in
 *       SETTLE; the abort channel is always a plain PUBLISH, see keys.ts)
 * Returns: { 'unknown' | 'finished' | 'running' | 'aborted', status before }
 */
export const ABORT = `
local raw = redis.call('GET', KEYS[1])
if not raw then return { 'unknown', '' } end
local ok, rec = pcall(cjson.decode, raw)
if not ok or type(rec) ~= 'table' then return { 'unknown', '' } end
local before = rec.status
if before == 'completed' or before == 'failed' or before == 'dead' or before == 'aborted' or before == 'skipped' then
  return { 'finished', before }
end
local jobId = ARGV[1]
redis.call('SADD', KEYS[3], jobId)
redis.call('PUBLISH', ARGV[2], cjson.encode({ queue = ARGV[4], id = jobId }))
if redis.call('HEXISTS', KEYS[2], jobId) == 1 then return { 'running', 'running' } end
local t = redis.call('TIME')
rec.status = 'aborted'
rec.finishedAt = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
rec.error = { name = 'JobAborted', message = 'aborted before it ran' }
redis.call('SET', KEYS[1], cjson.encode(rec))
redis.call(ARGV[5] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[3], cjson.encode({ jobId }))
return { 'aborted', before }
`;

/**
 * acquire: take a slot of a rate limiter, by the Redis clock so that workers agree.
 * KEYS: limitKey
 * ARGV: kind ('concurrent'|'window'), limit, ms (lease for concurrent, window for window), token
 * Returns: 0 when granted; else ms until a slot may free up (-1 when there is no telling).
 */
export const ACQUIRE = `
local kind, limit, ms, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if kind == 'concurrent' then
  -- Leases of workers that died without releasing run out.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  -- Already granted: this same call, sent again after its connection dropped with the reply. Refused
  -- now, its own slot would stay taken until the lease ran out.
  if redis.call('ZSCORE', KEYS[1], token) then return 0 end
  if redis.call('ZCARD', KEYS[1]) >= limit then return -1 end
  redis.call('ZADD', KEYS[1], now + ms, token)
  if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ms)
if redis.call('ZSCORE', KEYS[1], token) then return 0 end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + ms - now)
end
redis.call('ZADD', KEYS[1], now, token)
redis.call('PEXPIRE', KEYS[1], ms)
return 0
`;

/**
 * requeue: move dead letters back to the queue's stream with retries reset. The job is waiting again,
 * so it reads that way: a job with a record gets the record a sender writes (queued, no attempts, no
 * expiry) in place of its dead one, and a job sent with a jobId holds its id again (no expiry), so
 * that a second send is a no-op while it waits.
 * A letter whose jobId a newer job holds (sent after this one died and released it) stays in the
 * dlq: requeued, it would overwrite that job's record and run the same jobId twice. The dedup key
 * names its holder by sentAt; "queued" (cron ticks, keys an older dray wrote) cannot be told
 * apart and counts as this job's own.
 * KEYS: dlq, priorities
 * ARGV: streamPrefix, recordKeyPrefix, dedupKeyPrefix, id1, id2, ... (entry ids in the dlq)
 * Returns: number of letters requeued.
 */
export const REQUEUE = `
local n = 0
for i = 4, #ARGV do
  local entries = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  local e = entries[1]
  if e then
    local fields = e[2]
    local body
    for j = 1, #fields, 2 do if fields[j] == 'm' then body = fields[j + 1] end end
    local m
    if body then
      local ok, decoded = pcall(cjson.decode, body)
      if ok and type(decoded) == 'table' and type(decoded.id) == 'string' then m = decoded end
    end
    local held = false
    local own
    if m and m.dedup == true then
      own = string.match(body, '"sentAt":([%d%.eE%+%-]+)') or 'queued'
      local holder = redis.call('GET', ARGV[3] .. m.id)
      held = holder ~= false and holder ~= 'queued' and holder ~= own
    end
    if not held then
      if body then
        local prio = string.match(body, '"priority":(-?%d+)') or '0'
        redis.call('SADD', KEYS[2], prio)
        redis.call('XADD', ARGV[1] .. prio, '*', 'm', body, 'r', '0')
        if m then
          if m.tracked == true then
            -- The fields of pendingRecord (src/results/record.ts), which the MemoryBroker uses here.
            redis.call('SET', ARGV[2] .. m.id, cjson.encode({ id = m.id, actor = m.actor, queue = m.queue,
              status = 'queued', enqueuedAt = m.sentAt, attempts = 0 }))
          end
          if m.dedup == true then redis.call('SET', ARGV[3] .. m.id, own) end
        end
      end
      redis.call('XDEL', KEYS[1], ARGV[i])
      n = n + 1
    end
  end
end
return n
`;
