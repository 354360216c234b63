/**
 * The Lua scripts of leases (used by leases.ts): acking, renewing and leaving. Each checks which
 * consumer holds an entry, which a plain XACK or XCLAIM does not; the moves between a queue's
 * stream, delayed set and dead letters are in scripts.ts. Each works on the keys of one queue.
 */

/**
 * ack: jobs that finished, one call per queue per batch: the acks, the records and the message to
 * result waiters land together or not at all. Only entries this consumer still holds are acked: a
 * late ack of an entry that another worker reclaimed would delete that worker's entry, or overwrite
 * the record of a job now waiting for a retry with "completed".
 * Checking each entry (XPENDING) costs Redis about 1.6 us per job, so it is skipped when it cannot
 * find anything:
 * entries change hands only by a reclaim (READ), which counts on the queue's reclaims counter, and
 * `confirmed` is the counter's value when this consumer last saw the batch's entries its own (read
 * or renewed). Unchanged since: no entry of the batch can be anyone else's.
 * KEYS: running, aborted, reclaims
 * ARGV: group, consumer, doneChannel, confirmed (-1: unknown), sharded ('1': tell with SPUBLISH, as in
 *   SETTLE), the queue's record key and dedup key without the job id (`{<p>:<q>}:job:`, `{<p>:<q>}:id:`),
 *   then per stream: stream, n, and n jobs of
 *   7 fields: entryId, jobId, dedup ('1': the job has a dedup key), record ('1': touch its record),
 *   recordJson ('' = delete the record), keepMs (ttl of record and dedup key; 0 deletes the dedup
 *   key), srem ('1' = leave the aborted set). The keys are made here from the id: a job's two key
 *   names would be most of the bytes each ack sends.
 * Returns: the entry ids not acked because this consumer does not hold them (and did not just ack
 * them in an earlier send of this call).
 */
export const ACK = `
local group, consumer, channel = ARGV[1], ARGV[2], ARGV[3]
local fresh = tonumber(ARGV[4]) == tonumber(redis.call('GET', KEYS[3]) or '0')
local recordKey, dedupKey = ARGV[6], ARGV[7]
local i, lost, told = 8, {}, {}
local function mine(stream, id)
  if fresh then return true end
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return p[1] ~= nil and p[1][2] == consumer
end
while i <= #ARGV do
  local stream, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local acked = {}
  for _ = 1, n do
    -- keep stays a string: Redis formats a Lua number back into one for every call that takes it.
    local id, jobId, json, keep = ARGV[i], ARGV[i + 1], ARGV[i + 4], ARGV[i + 5]
    local dedup = ARGV[i + 2] == '1' and dedupKey .. jobId or ''
    local rec = ARGV[i + 3] == '1' and recordKey .. jobId or ''
    if mine(stream, id) then
      acked[#acked + 1] = id
      if dedup ~= '' then
        if keep ~= '0' then redis.call('PEXPIRE', dedup, keep) else redis.call('DEL', dedup) end
      end
      if ARGV[i + 6] == '1' then redis.call('SREM', KEYS[2], jobId) end
      if rec ~= '' then
        if json ~= '' then redis.call('SET', rec, json, 'PX', keep) else redis.call('DEL', rec) end
        told[#told + 1] = jobId
      end
    elseif rec == '' or json == '' or redis.call('GET', rec) ~= json then
      -- Not held: reclaimed by another worker, or settled. When the record holds what this call
      -- writes, it was this same call, sent again after its connection dropped with the reply.
      lost[#lost + 1] = id
    end
    i = i + 7
  end
  if #acked > 0 then
    redis.call('XACK', stream, group, unpack(acked))
    redis.call('XDEL', stream, unpack(acked))
  end
end
if #told > 0 then
  redis.call('HDEL', KEYS[1], unpack(told))
  redis.call(ARGV[5] == '1' and 'SPUBLISH' or 'PUBLISH', channel, cjson.encode(told))
end
return lost
`;

/**
 * renew: resets the idle time of the entries this consumer still holds, so that no one reclaims them
 * while their jobs run. XCLAIM alone would succeed whoever holds an entry: a worker that stalled past
 * the visibility timeout would take a job back from the worker that reclaimed it, and both would run
 * it to the end. An entry held by another consumer (or settled) is reported instead.
 * KEYS: stream, reclaims
 * ARGV: group, consumer, lowestId, highestId, id1, id2, ...
 * Returns: { reclaims counter (what the held ones are confirmed at, see ACK), lost id1, lost id2, ... }.
 */
export const RENEW = `
local group, consumer = ARGV[1], ARGV[2]
local mine = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], group, ARGV[3], ARGV[4], 1000000, consumer)) do mine[p[1]] = true end
local claim, lost = { 'XCLAIM', KEYS[1], group, consumer, 0 }, { tonumber(redis.call('GET', KEYS[2]) or '0') }
for i = 5, #ARGV do
  if mine[ARGV[i]] then claim[#claim + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #claim > 5 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return lost
`;

/**
 * prune: removes consumers of a stream's group that hold nothing and have not read for `idleMs`:
 * workers that are gone (killed, or stopped by a dray that did not remove its own). A consumer that
 * holds entries is kept whatever its idle time: removing it would drop its entries from the pending
 * list, the only trace that they still have to run. One script, so that no consumer reads between the
 * check and the removal. With idleMs 0 only `consumer` itself goes, if it holds nothing (a worker
 * leaving); a live worker removed by mistake costs nothing: its next read makes it again.
 * KEYS: stream
 * ARGV: group, consumer, idleMs
 * Returns: how many consumers were removed.
 */
export const PRUNE = `
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local idleMs, n = tonumber(ARGV[3]), 0
for _, c in ipairs(consumers) do
  local f = {}
  for j = 1, #c, 2 do f[c[j]] = c[j + 1] end
  local gone
  if idleMs == 0 then gone = f.name == ARGV[2] else gone = f.name ~= ARGV[2] and f.idle > idleMs end
  if gone and f.pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f.name)
    n = n + 1
  end
end
return n
`;
