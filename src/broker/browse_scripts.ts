/**
 * The read-only Lua scripts of the operator's views (admin.ts counts, browse.ts lists running jobs
 * and finds one): they change nothing, and are scripts only so that each costs one round trip
 * whatever the queue holds. Like the READ script, they make a queue's stream keys from its stream
 * prefix: those share the queue's hash tag, so every key a call touches is in the slot of the keys
 * it declares.
 */

/**
 * stats: a queue's counts. A stream's pending count is what its consumers hold (running); the rest of
 * its entries wait (ready): entries are XDELeted when settled. A level whose stream has no consumer
 * group yet (nothing ever read it) has nothing pending, which XPENDING reports as an error.
 * KEYS: priorities, delayed, dlq
 * ARGV: streamPrefix, group
 * Returns: { ready, running, delayed, dead }
 */
export const STATS = `
local ready, running = 0, 0
for _, prio in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local stream = ARGV[1] .. prio
  local len = redis.call('XLEN', stream)
  local ok, summary = pcall(redis.call, 'XPENDING', stream, ARGV[2])
  local pending = 0
  if ok then pending = summary[1] end
  running = running + pending
  ready = ready + len - pending
end
return { ready, running, redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3]) }
`;

/**
 * running: one page of a queue's running jobs, the RUNNING state of browse.ts, in one round trip (a
 * dashboard asks for it every 2 s). Every level's pending entries after the cursor (XPENDING, at most
 * limit + 1 a level, so a page reads a bounded amount whatever is running), merged oldest entry first
 * and, on equal ids (two levels), the higher level first (pages.ts compareRunning); then each listed
 * entry's body and, for a body that names a job, when its run started (the running hash). An entry
 * deleted while pending (not by dray) has no body left: it still lists, with no fields. Stream ids
 * are compared as digit strings, not numbers: a sequence may pass what a Lua number holds exactly.
 * KEYS: priorities, running
 * ARGV: streamPrefix, group, limit, cursorPriority ('' for the first page), cursorId
 * Returns: { more (1 when a next page exists), { priority, entryId, consumer, deliveries, fields,
 *   startedAt ('' when not tracked) } per listed job }
 */
export const RUNNING = `
local prefix, group, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local after, afterId = tonumber(ARGV[4]), ARGV[5]
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function older(x, y)
  if x.ms ~= y.ms then return less(x.ms, y.ms) end
  if x.seq ~= y.seq then return less(x.seq, y.seq) end
  return x.level > y.level
end
local rows = {}
for _, prio in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local level, start = tonumber(prio), '-'
  -- After the cursor: a later entry, or the same id at a lower level.
  if after then
    if level < after then start = afterId else start = '(' .. afterId end
  end
  local ok, pending = pcall(redis.call, 'XPENDING', prefix .. prio, group, start, '+', limit + 1)
  if ok then
    for _, p in ipairs(pending) do
      local ms, seq = string.match(p[1], '^(%d+)-(%d+)$')
      rows[#rows + 1] = { prio = prio, level = level, id = p[1], ms = ms, seq = seq, consumer = p[2], deliveries = p[4] }
    end
  end
end
table.sort(rows, older)
local listed = {}
for i = 1, math.min(limit, #rows) do
  local r = rows[i]
  local entry = redis.call('XRANGE', prefix .. r.prio, r.id, r.id)[1]
  local fields, startedAt = entry and entry[2] or {}, ''
  for j = 1, #fields, 2 do
    if fields[j] == 'm' then
      local ok, m = pcall(cjson.decode, fields[j + 1])
      if ok and type(m) == 'table' and type(m.id) == 'string' then startedAt = redis.call('HGET', KEYS[2], m.id) or '' end
    end
  end
  listed[i] = { r.prio, r.id, r.consumer, r.deliveries, fields, startedAt }
end
return { #rows > limit and 1 or 0, listed }
`;

/**
 * find: the first entry of one list (a priority stream, the delayed set or the dead letters) whose
 * message has id `jobId`, looking at no more than `scanLimit` entries, oldest first. A job id is not
 * indexed, so finding one is a scan; here it runs in Redis, in pages of 500 that stop at the first
 * match, where paged XRANGEs from the client would carry every body examined over the network. A
 * body is decoded only when the quoted id appears in it verbatim; what a scan costs is reading the
 * entries into Lua, about 2.5 us each (25 ms for 10,000 entries of 0.5 KB in a local try, Redis 7),
 * and scanLimit bounds it. Each list is its own call, so other clients run in between.
 * KEYS: list, running (the queue's running hash for a stream, else its `none` key)
 * ARGV: kind ('stream' | 'delayed' | 'dlq'), group, jobId, quotedId (the id as a JSON string), scanLimit
 * Returns: nil when not found; else
 *   stream   { entryId, fields, consumer ('' when ready), deliveries, startedAt ('' when not tracked) }
 *   delayed  { member, score, position among the members due at that same score }
 *   dlq      { entryId, fields }
 */
export const FIND = `
local kind, group, id, quoted, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local function isIt(body)
  if not body or not string.find(body, quoted, 1, true) then return false end
  local ok, m = pcall(cjson.decode, body)
  return ok and type(m) == 'table' and m.id == id
end
local seen = 0
if kind == 'delayed' then
  while seen < limit do
    local batch = redis.call('ZRANGE', KEYS[1], seen, math.min(seen + 500, limit) - 1, 'WITHSCORES')
    for i = 1, #batch, 2 do
      local member, score = batch[i], batch[i + 1]
      if isIt(string.match(member, '^%-?%d+|%d+|(.*)$') or member) then
        local before = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. score)
        return { member, score, seen + (i - 1) / 2 - before }
      end
    end
    if #batch < 1000 then return nil end
    seen = seen + 500
  end
  return nil
end
local from = '-'
while seen < limit do
  local n = math.min(500, limit - seen)
  local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', n)
  for _, e in ipairs(batch) do
    local fields, body = e[2], nil
    for j = 1, #fields, 2 do if fields[j] == 'm' then body = fields[j + 1] end end
    if isIt(body) then
      if kind ~= 'stream' then return { e[1], fields } end
      local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], group, e[1], e[1], 1)
      if not ok or not p[1] then return { e[1], fields, '', 0, '' } end
      return { e[1], fields, p[1][2], p[1][4], redis.call('HGET', KEYS[2], id) or '' }
    end
  end
  if #batch < n then return nil end
  seen = seen + n
  from = '(' .. batch[#batch][1]
end
return nil
`;
