/**
 * The Redis key schema: every key dray writes is made here.
 *
 * All keys of one queue share the hash tag `{<prefix>:<queue>}`, so a queue's scripts touch a single
 * slot (Redis Cluster ready) and two apps with different prefixes never share a key.
 *
 *   <p>:actors                      hash   actor name -> JSON {queue, priority}; published by workers
 *                                          at start so `sendTask(name)` can route without the module
 *   <p>:queues                      set    names of queues that ever had an actor
 *   {<p>:<q>}:stream:<priority>     stream ready messages; one stream per priority level, read
 *                                          highest first. Entry fields: m = message JSON, r = retries
 *                                          so far. Consumer group "dray". Entries are XDELeted on ack,
 *                                          so a stream holds only what is waiting or running.
 *   {<p>:<q>}:priorities            set    priority levels in use on the queue (which streams to read)
 *   {<p>:<q>}:delayed               zset   messages waiting for their time (delay, at, retry backoff);
 *                                          member "<priority>|<retries>|<message JSON>", score = due ms
 *                                          by the Redis clock
 *   {<p>:<q>}:dlq                   stream dead letters. Fields: m, r, e = error JSON, at = when (ms)
 *   {<p>:<q>}:id:<jobId>            string stream entry id (or "delayed") of a job sent with a jobId;
 *                                          present while the job is known, so a second send is a no-op
 */
export const GROUP = "dray";

export interface QueueKeys {
  streamPrefix: string;
  priorities: string;
  delayed: string;
  dlq: string;
  stream(priority: number): string;
  dedup(jobId: string): string;
}

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
  };
}

export const actorsKey = (prefix: string): string => `${prefix}:actors`;
export const queuesKey = (prefix: string): string => `${prefix}:queues`;

/** The queue a stream key belongs to (for logs and dead letters of entries that cannot be decoded). */
export function queueOfStream(prefix: string, stream: string): string {
  const start = prefix.length + 2;
  const end = stream.indexOf("}", start);
  return stream.slice(start, end);
}
