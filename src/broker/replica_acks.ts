/**
 * Durable sends: a send resolves only once replicas of the master that took it have it too.
 *
 * Redis replicates asynchronously: a master acknowledges a write before any replica has it, and a
 * master that dies in between takes the write with it; its replica, promoted, never had the job.
 * `WAIT <replicas> <timeout>` closes that gap. It answers how many replicas have acknowledged every
 * write this connection made so far, so it must run on the connection, and so the node, that made
 * the write: each node's enqueue pipeline is followed by one there (see {@link replicaAcked}).
 */
import type { Redis } from "ioredis";
import { checkReplicaAcks, type ReplicaAcks } from "../config.ts";
import { ReplicationTimeout } from "../errors.ts";
import { isCluster, keySlot } from "./cluster.ts";
import type { AfterPipeline, RedisClient, Scripted } from "./connection.ts";

/**
 * Each client's twin for sends that wait for replicas. A WAIT holds its connection until the replicas
 * answer (up to the timeout, when one is down), and Redis runs nothing else of that connection
 * meanwhile: on the broker's own connection a worker's reads and acks, or a sender's result waits,
 * would queue behind it. The twin ends with its client. Sends on the twin still queue behind each
 * other's WAITs: with a replica away, each waits the whole timeout in turn.
 */
const twins = new WeakMap<RedisClient, Scripted>();

/** The connection for sends that wait for replicas: made by `make` once per client, closed with it. */
function ackedClient(redis: RedisClient, make: () => Scripted): Scripted {
  let twin = twins.get(redis);
  // A client that has ended fails the send itself, with its usual error, and leaks no twin.
  if (!twin && redis.status === "end") return redis as Scripted;
  if (!twin) {
    const made = make();
    twins.set(redis, (twin = made));
    // A Cluster client may end and start again (reviveCluster): the next send then makes a new twin.
    redis.once("end", () => {
      twins.delete(redis);
      made.disconnect();
    });
  }
  return twin;
}

/** Options validated once each: enqueue asks for every send. */
const checked = new WeakMap<ReplicaAcks, Required<ReplicaAcks>>();

/**
 * What follows each node's enqueue pipeline when sends wait for replicas: a WAIT on the connection
 * that ran the writes, and the check of its answer. On a single Redis that is the client itself (its
 * one connection, commands in order). On a Cluster it is the connection to the master now serving
 * the pipeline's slot, which ran the writes: ioredis follows a MOVED by moving the slot there first.
 * (A WAIT inside the pipeline would save a round trip but stops ioredis from following redirections
 * through a failover at all: it redirects only pipelines whose every command was refused.) A write
 * that failed is the caller's to report; otherwise too few replicas reject the send with
 * ReplicationTimeout.
 */
export function replicaAcked(redis: RedisClient, given: ReplicaAcks | undefined, makeTwin: () => Scripted):
  { client: Scripted; after: AfterPipeline } | undefined {
  if (!given) return undefined;
  let acks = checked.get(given);
  if (!acks) checked.set(given, (acks = checkReplicaAcks(given)!));
  const { replicas, timeoutMs } = acks;
  const client = ackedClient(redis, makeTwin);
  return { client, after: async (replies, key) => {
    if (replies.some(([error]) => error)) return;
    const node = key === undefined ? client : ownerOf(client, key);
    let got: number;
    try {
      got = Number(await node.call("WAIT", replicas, timeoutMs));
    } catch (error) {
      throw new ReplicationTimeout(`WAIT for ${replicas} replica(s) failed: ${(error as Error).message}: the job is queued, ` +
        "but may or may not survive a failover of that master", { cause: error });
    }
    if (got < replicas) {
      throw new ReplicationTimeout(`the send reached the master but only ${got} of ${replicas} replica(s) ` +
        `acknowledged it within ${timeoutMs} ms: the job is queued, but may or may not survive a failover of that master`);
    }
  } };
}

/**
 * The client's connection to the node serving `key` (on a single Redis, the client itself): the one
 * its pipeline for `key` went to. Looked up among all nodes: a replica just promoted may still be
 * filed as one by ioredis.
 */
function ownerOf(redis: RedisClient, key: string): Redis | RedisClient {
  if (!isCluster(redis)) return redis;
  const owner = redis.slots[keySlot(key)]?.[0];
  const node = redis.nodes("all").find((n) => `${n.options.host}:${n.options.port}` === owner);
  // A node the client has no connection to (its map is being reloaded): no WAIT can vouch for the write.
  if (!node) throw new ReplicationTimeout(`no connection to the master of ${key} (${owner ?? "unknown"}) to WAIT on`);
  return node;
}
