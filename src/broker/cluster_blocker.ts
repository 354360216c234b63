import type { Cluster, Redis } from "ioredis";
import { keySlot } from "./cluster.ts";
import { decodeEntries, nodeClient, type Entry } from "./connection.ts";
import { GROUP, queueOfStream } from "./keys.ts";
import type { Delivery, MalformedDelivery } from "../message.ts";

/** One queue's blocking connection: a plain client of the master that serves the queue's slot. */
interface Shard {
  /** The master, as ioredis names it in `cluster.slots` ("host:port"). */
  node: string;
  conn: Redis;
  /** Its CLIENT ID, once known, for CLIENT UNBLOCK. */
  id: number | undefined;
  /** An XREADGROUP is on it. */
  blocking: boolean;
}

/**
 * The blocking read on a Redis Cluster, for {@link Blocker}. One XREADGROUP names the streams of one
 * slot only (a queue's priority levels share its `{<p>:<q>}` tag), and a block on the shared Cluster
 * client would hold up every other command to that node. So each queue blocks on a connection of its
 * own to the master serving its slot, all at once; the first to return wakes the others with
 * CLIENT UNBLOCK, sent to their own node (on the Cluster client's connection to it), and the read
 * waits for every one of them, so that an entry Redis delivered meanwhile is not lost.
 *
 * A connection that fails (the master died, the slot moved: MOVED, CLUSTERDOWN) is dropped, ioredis
 * reloads the slots, and the read ends a little later as if it timed out: the broker's next read
 * finds the queue's new master. A block whose connection closed may have had its reply lost with
 * it: `lost` tells the broker, whose recover pass looks for such entries.
 */
export class ClusterBlocker {
  readonly #cluster: Cluster;
  readonly #prefix: string;
  readonly #consumer: string;
  readonly #lost: () => void;
  /** By queue. */
  readonly #shards = new Map<string, Shard>();
  /** Ends the read in progress, if any. */
  #wake: (() => void) | undefined;

  constructor(cluster: Cluster, prefix: string, consumer: string, lost: () => void) {
    this.#cluster = cluster;
    this.#prefix = prefix;
    this.#consumer = consumer;
    this.#lost = lost;
  }

  /** Reads new entries of `streams` (of any queues) into `out`, waiting up to `waitMs` for some to arrive. */
  async read(streams: string[], count: number, waitMs: number, out: Array<Delivery | MalformedDelivery>): Promise<void> {
    const byQueue = new Map<string, string[]>();
    for (const stream of streams) {
      const queue = queueOfStream(this.#prefix, stream);
      const list = byQueue.get(queue);
      if (list) list.push(stream);
      else byQueue.set(queue, [stream]);
    }
    // Queues no longer read (paused, or the worker's list changed) keep no connection.
    for (const [queue, shard] of this.#shards) if (!byQueue.has(queue)) this.#drop(queue, shard);
    const round = new Round((shard) => void this.#unblock(shard, round));
    this.#wake = () => round.wake();
    try {
      await Promise.all([...byQueue].map(([queue, names]) => this.#readQueue(queue, names, count, waitMs, out, round)));
    } finally {
      this.#wake = undefined;
    }
    if (round.failure) throw round.failure;
  }

  /** One queue's part of a read: a block on its master's connection, which wakes the round when it returns. */
  async #readQueue(queue: string, names: string[], count: number, waitMs: number, out: Array<Delivery | MalformedDelivery>,
    round: Round): Promise<void> {
    const shard = this.#shard(queue, names[0]!);
    if (!shard) {
      // ioredis has not loaded this slot's master yet (or lost it): look again shortly.
      this.#cluster.refreshSlotsCache();
      await round.pause(Math.min(waitMs, RETRY_MS));
      return round.wake();
    }
    if (round.woken) return;
    if (shard.id === undefined) {
      // Pipelined before the read, so it costs no round trip of its own; once per connection.
      shard.conn.client("ID").then((id) => (shard.id = Number(id)), () => undefined);
    }
    round.blocking.add(shard);
    shard.blocking = true;
    try {
      const res = (await shard.conn.xreadgroup("GROUP", GROUP, this.#consumer, "COUNT", count, "BLOCK", waitMs,
        "STREAMS", ...names, ...names.map(() => ">"))) as [string, Entry[]][] | null;
      for (const [stream, entries] of res ?? []) decodeEntries(out, queue, stream, entries);
      if (res) round.wake();
    } catch (error) {
      if (String(error).includes("NOGROUP")) {
        round.failure ??= error; // the broker forgets its streams and reads with the script, which makes the group
        return round.wake();
      }
      // The master died or no longer serves the slot: carry on with the one ioredis finds next.
      this.#drop(queue, shard);
      this.#cluster.refreshSlotsCache();
      await round.pause(Math.min(waitMs, RETRY_MS));
      round.wake();
    } finally {
      shard.blocking = false;
      round.blocking.delete(shard);
    }
  }

  /** Ends the read in progress without losing its replies. */
  wake(): void {
    this.#wake?.();
  }

  /** CLIENT UNBLOCK on the shard's node; again shortly while its read has not reached Redis yet. */
  async #unblock(shard: Shard, round: Round): Promise<void> {
    for (let tries = 0; tries < 20 && round.blocking.has(shard); tries++) {
      const control = shard.id === undefined ? undefined : this.#control(shard.node);
      const done = control ? Number(await control.client("UNBLOCK", shard.id!, "TIMEOUT").catch(() => 1)) : 0;
      if (done !== 0) return;
      await new Promise((r) => setTimeout(r, 2));
    }
    // Not unblocked: the read ends by itself within its wait.
  }

  /** The Cluster client's own connection to `node`: CLIENT UNBLOCK needs no connection of its own. */
  #control(node: string): Redis | undefined {
    return this.#cluster.nodes("all").find((n) => `${n.options.host}:${n.options.port}` === node);
  }

  /** The queue's blocking connection, to the master that serves its slot now; undefined when ioredis knows none. */
  #shard(queue: string, stream: string): Shard | undefined {
    const node = this.#cluster.slots[keySlot(stream)]?.[0];
    if (!node) return undefined;
    const known = this.#shards.get(queue);
    if (known && known.node === node && known.conn.status !== "end") return known;
    if (known) this.#drop(queue, known);
    const shard: Shard = { node, conn: nodeClient(this.#cluster, node, "dray-block"), id: undefined, blocking: false };
    shard.conn.on("error", () => undefined); // the read fails too, and says so
    shard.conn.on("close", () => {
      shard.id = undefined;
      if (shard.blocking) this.#lost();
    });
    this.#shards.set(queue, shard);
    return shard;
  }

  #drop(queue: string, shard: Shard): void {
    if (this.#shards.get(queue) === shard) this.#shards.delete(queue);
    shard.conn.disconnect();
  }

  /** Drops every connection: shutdown. */
  close(): void {
    this.#wake?.();
    for (const [queue, shard] of this.#shards) this.#drop(queue, shard);
  }
}

/** One read over all the queues: which of them still block, and whether it is over. */
class Round {
  woken = false;
  /** The blocks still on, which a wake ends. */
  readonly blocking = new Set<Shard>();
  /** An error to throw once every block returned. */
  failure: unknown;
  readonly #pauses = new Set<() => void>();
  readonly #unblock: (shard: Shard) => void;

  constructor(unblock: (shard: Shard) => void) {
    this.#unblock = unblock;
  }

  /** Ends every block and pause of the round; each block's reply still arrives, and is awaited. */
  wake(): void {
    if (this.woken) return;
    this.woken = true;
    for (const end of [...this.#pauses]) end();
    for (const shard of this.blocking) this.#unblock(shard);
  }

  /** Waits `ms`, or until the round is woken. */
  pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.woken) return resolve();
      const end = () => {
        clearTimeout(timer);
        this.#pauses.delete(end);
        resolve();
      };
      const timer = setTimeout(end, ms);
      this.#pauses.add(end);
    });
  }
}

/** How long a queue whose master failed waits before the read ends and the broker looks again. */
const RETRY_MS = 250;
