/**
 * The Redis key schema: every key dray writes is made here.
 *
 * Slots (Redis Cluster): a queue's keys, its crons' included, are in the slot of `{<p>:<q>}`; the
 * history keys in that of `{<p>:history}`; <p>:actors, <p>:queues, <p>:crons, <p>:paused, <p>:workers
 * and the <p>:abort channel each in a slot of its own, as is each <p>:limit:<key>. So every script
 * touches one slot, and commands about several go in one pipeline per node (bySlotGroup in
 * connection.ts). The prefix may hold no `{` or `}` (config.ts), which would move the hash tag.
 *
 * All keys of one queue share the hash tag `{<prefix>:<queue>}`, so a queue's scripts touch a single
 * slot and two apps with different prefixes never share a key.
 *
 *   <p>:actors                      hash   actor name -> JSON {queue, priority}; published by workers
 *                                          at start so `sendTask(name)` can route without the module
 *   <p>:queues                      set    names of queues that ever had an actor
 *   {<p>:<q>}:stream:<priority>     stream ready messages; one stream per priority level, read
 *                                          highest first. Entry fields: m = message JSON, r = retries
 *                                          so far. Consumer group "dray", one consumer per worker
 *                                          process: only the consumer holding an entry renews or
 *                                          settles it. A worker removes its consumer when it stops;
 *                                          others remove consumers that hold nothing and read nothing
 *                                          for six visibility timeouts. Entries are XDELeted on ack,
 *                                          so a stream holds only what is waiting or running: the
 *                                          group's pending entries run, the rest wait, all after its
 *                                          last-delivered-id (no group yet: all wait). browse.ts
 *                                          lists them so; STATS (browse_scripts.ts) counts them so
 *   {<p>:<q>}:priorities            set    priority levels in use on the queue (which streams to read)
 *   {<p>:<q>}:delayed               zset   messages waiting for their time (delay, at, retry backoff);
 *                                          member "<priority>|<retries>|<message JSON>", score = due ms
 *                                          by the Redis clock
 *   {<p>:<q>}:reclaims              string a counter, one more for every reclaim that took entries from
 *                                          a consumer (the READ script). A consumer that saw it
 *                                          unchanged since it last confirmed its entries (read or
 *                                          renewed them) still holds them all: its ack skips the
 *                                          per-entry check. Anything else that moves entries between
 *                                          consumers (XCLAIM by hand) must INCR it too
 *   {<p>:<q>}:dlq                   stream dead letters. Fields: m, r, e = error JSON, at = when (ms)
 *   {<p>:<q>}:id:<jobId>            string the sentAt (ms) of the message holding a jobId ("queued" from
 *                                          a cron tick, or from an older dray); present while the job
 *                                          is known, so a second send is a no-op. dlq requeue reads it to
 *                                          tell the dead job's own hold from a newer job's
 *
 * Results, status, abort and rate limits (src/results/, src/middleware/rate_limit.ts).
 *
 *   {<p>:<q>}:job:<jobId>           string JSON JobRecord (src/results/types.ts): status, timestamps,
 *                                          attempts, result, last error. Written by the sender with the
 *                                          message (queued/delayed, no expiry) and by the worker in the
 *                                          same transaction as the ack (then expires after the actor's
 *                                          resultTtl). Never written for actors with resultTtl 0
 *   {<p>:<q>}:running               hash   job id -> ms its run started, for jobs with a record that a
 *                                          worker holds: one HSET per read batch, HDEL when settled, so
 *                                          "running" costs no write per job. Read by job.status() and
 *                                          the RUNNING script (browse_scripts.ts: when a job started). Plus
 *                                          the field "" ({@link runningPin}), never removed
 *   {<p>:<q>}:aborted               set    ids of jobs aborted before they settled; workers load it at
 *                                          start, skip those jobs and SREM them when they settle
 *   {<p>:<q>}:none                  never written: a script's key where it uses none (see QueueKeys.none)
 *   {<p>:<q>}:done                  pubsub channel: JSON array of ids of jobs whose record just
 *                                          finished (one message per ack batch); result waiters listen.
 *                                          Sharded on a Redis Cluster (SPUBLISH/SSUBSCRIBE, in the
 *                                          queue's slot); plain PUBLISH on a single Redis
 *   <p>:abort                       pubsub channel: JSON {queue, id} of an aborted job; the worker
 *                                          running it stops it. Plain PUBLISH/SUBSCRIBE on a Cluster
 *                                          too: a broadcast to every node, as every worker must hear it
 *   <p>:paused                      set    names of paused queues: workers read none of them (they
 *                                          check every second); sends, delays and retries still land
 *   <p>:workers                     hash   worker id -> JSON WorkerInfo (src/broker/types.ts) with its
 *                                          own expiresAt: a heartbeat every few seconds, HDEL on a
 *                                          clean stop; readers skip and HDEL lapsed entries
 *   <p>:limit:<key>:running         zset   a concurrency limit: member = a running job's token
 *                                          "<jobId>:<entryId>:<consumer>/<run nonce>" (the consumer names the
 *                                          worker), score = its lease's expiry ms (a dead
 *                                          worker's slot frees itself). Keyed by limit, not queue:
 *                                          actors of several queues may share one. <key> defaults to
 *                                          the actor's name
 *   <p>:limit:<key>:window          zset   a sliding-window limit: member = token, score = ms it
 *                                          started; trimmed to the window on each take
 *
 * Cron (src/cron/). <q> is the queue of the cron's actor, so the tick script that claims a tick and
 * enqueues its job touches one slot. A tick's job id is "cron:<name>:<tick ms>".
 *
 *   <p>:crons                       hash   cron name -> JSON {actor, queue, expression, timezone};
 *                                          published by tickers so `dray cron` works without modules
 *   {<p>:<q>}:cron:<name>:last      string the newest tick handled (ms since epoch), run or skipped;
 *                                          only the tick script writes it, and only forward
 *   {<p>:<q>}:cron:<name>:lock      string overlap lock: id of the job whose run holds it; PX lockTtl,
 *                                          renewed by that run every lockTtl/3 while it goes on
 *   {<p>:<q>}:cron:<name>:runs      hash   run id "<jobId>#<attempt>" -> run JSON (status, tick, times,
 *                                          duration, result or error)
 *   {<p>:<q>}:cron:<name>:order     zset   run ids, score = start ms; trimmed with their runs to
 *                                          the cron's historySize
 *
 * History (src/broker/history.ts, src/history/): what workers did, per minute and per hour. Every
 * key has the hash tag `{<p>:history}`, so the script that adds a worker's batch touches one slot.
 * A bucket is an index plus one hash per actor that did something in it; <m> below is
 * "<queue>|<actor>" (queue names have no "|"). Counts are named in src/history/buckets.ts (outcomes,
 * d<i>/w<i> duration and wait buckets, dsum/wsum in µs), values whole numbers added with HINCRBY;
 * only non-zero counts are written. Each worker adds its counts every few seconds (one script call
 * for all its buckets), never per job. Each key expires a fixed time after its bucket starts
 * (PEXPIREAT): minute buckets after 3 hours (MINUTE_RETENTION_MS), hour buckets after 8 days
 * (HOUR_RETENTION_MS).
 *
 *   {<p>:history}:m:<minute ms>     hash   index of the minute: <m> -> 1 for each actor counted in it
 *   {<p>:history}:m:<minute ms>:<m> hash   that actor's counts in that minute
 *   {<p>:history}:h:<hour ms>       hash   index of the hour, as for a minute
 *   {<p>:history}:h:<hour ms>:<m>   hash   that actor's counts in that hour
 *
 * Memory, by MEMORY USAGE on Redis 7.0 (test/history.test.ts, "history memory in Redis"): a busy
 * actor (10 jobs/s, ~60 counts per bucket) costs ~680 B per minute and ~940 B per hour, its share of
 * the index included; a quiet one (1 job/min) ~230 B and ~520 B. An actor busy around the clock so
 * holds ~300 KB (180 minutes and 192 hours live at once), and each day it ran keeps ~23 KB for 8
 * days (a quiet one: ~140 KB, ~13 KB a day). One hash per bucket with "<queue>|<actor>|<count>"
 * fields would cost 2.6 KB per busy actor-minute, and 5.8 KB past 512 fields (~8 busy actors), where
 * Redis stops packing a hash: hence a small hash per actor.
 */
export const GROUP = "dray";

export interface QueueKeys {
  streamPrefix: string;
  priorities: string;
  delayed: string;
  dlq: string;
  stream(priority: number): string;
  dedup(jobId: string): string;
  job(jobId: string): string;
  running: string;
  reclaims: string;
  aborted: string;
  done: string;
  /**
   * Names no data: a script's key where it uses none (no dedup id, no record). Every key a script
   * declares is then in the queue's slot and under the prefix, as Redis Cluster and an ACL user
   * limited to the prefix need; scripts tell it by its ending (`}:none`, which no other key has).
   */
  none: string;
}

/**
 * A field written with every HSET of the running hash, so that Redis keeps that hash as a table.
 * Redis stores a small hash (up to hash-max-listpack-entries, 512 by default) as one flat list, and
 * each field an HSET or HDEL touches is a scan of that list: with hundreds of jobs in flight, marking
 * a batch running cost Redis 1.5-2 us per job (bench/README.md, "The running hash"). A value longer
 * than hash-max-listpack-value (64 by default) makes Redis build a table instead, which it keeps
 * while the key lives, and this field keeps the key alive between batches. "" is no job id (ids are
 * 1-200 characters), so readers of the hash never meet it.
 */
export const runningPin: readonly [string, string] = ["", "-".repeat(80)];

export function queueKeys(prefix: string, queue: string): QueueKeys {
  const tag = `{${prefix}:${queue}}`;
  const streamPrefix = `${tag}:stream:`;
  return {
    streamPrefix,
    priorities: `${tag}:priorities`,
    delayed: `${tag}:delayed`,
    dlq: `${tag}:dlq`,
    stream: (priority) => `${streamPrefix}${priority}`,
    dedup: (jobId) => `${tag}:id:${jobId}`,
    job: (jobId) => `${tag}:job:${jobId}`,
    running: `${tag}:running`,
    reclaims: `${tag}:reclaims`,
    aborted: `${tag}:aborted`,
    done: `${tag}:done`,
    none: `${tag}:none`,
  };
}

export interface CronKeys {
  last: string;
  lock: string;
  runs: string;
  order: string;
}

export function cronKeys(prefix: string, queue: string, name: string): CronKeys {
  const base = `{${prefix}:${queue}}:cron:${name}`;
  return { last: `${base}:last`, lock: `${base}:lock`, runs: `${base}:runs`, order: `${base}:order` };
}

export const cronsKey = (prefix: string): string => `${prefix}:crons`;
export const actorsKey = (prefix: string): string => `${prefix}:actors`;
export const queuesKey = (prefix: string): string => `${prefix}:queues`;
export const abortChannel = (prefix: string): string => `${prefix}:abort`;
export const pausedKey = (prefix: string): string => `${prefix}:paused`;
export const workersKey = (prefix: string): string => `${prefix}:workers`;
/** A history bucket's index: the hash of the actors that did something in it. */
export const historyKey = (prefix: string, resolution: "minute" | "hour", at: number): string =>
  `{${prefix}:history}:${resolution === "minute" ? "m" : "h"}:${at}`;
/** One actor's counts in a bucket; `member` is "<queue>|<actor>", as the index lists it. */
export const historyActorKey = (index: string, member: string): string => `${index}:${member}`;
export const limitKey = (prefix: string, key: string): string => `${prefix}:limit:${key}`;

/** The queue a stream key belongs to (for logs and dead letters of entries that cannot be decoded). */
export function queueOfStream(prefix: string, stream: string): string {
  const start = prefix.length + 2;
  const end = stream.indexOf("}", start);
  return stream.slice(start, end);
}
