import type { Cluster } from "ioredis";
import { connect, decodeEntries, type ConnectOptions, type Entry, type RedisClient } from "./connection.ts";
import { isCluster } from "./cluster.ts";
import { ClusterBlocker } from "./cluster_blocker.ts";
import { GROUP, queueOfStream } from "./keys.ts";
import type { Delivery, MalformedDelivery } from "../message.ts";

/**
 * The blocking read (XREADGROUP … BLOCK) on a connection of its own, and the one way to cut it short.
 *
 * Waking it by dropping the connection loses whatever Redis delivered in that instant: the entries
 * stay pending for this consumer, unseen, until the visibility timeout, and their reclaim then counts
 * as a lost claim although no worker died. `CLIENT UNBLOCK` from the command connection ends the
 * block instead as if it timed out, and a reply already on its way still arrives on an open
 * connection. A connection that closes anyway (Redis restarts, CLIENT KILL) is noted in
 * {@link lostReplies} so that the broker can look for entries a lost reply carried.
 *
 * On a Redis Cluster one XREADGROUP cannot name the streams of queues in different slots: there
 * {@link ClusterBlocker} blocks on each queue's master at once, and is woken the same way.
 */
export class Blocker {
  readonly #options: ConnectOptions;
  readonly #prefix: string;
  readonly #consumer: string;
  /** Sends CLIENT UNBLOCK: the command connection. */
  readonly #control: RedisClient;
  #conn: RedisClient | undefined;
  /** The blocking connection's CLIENT ID, once known; a reconnect makes a new one. */
  #id: number | undefined;
  /** When the block in progress gives up (0 when none). */
  #until = 0;
  /** A wake that came before the block began: the next block returns at once. */
  #woken = false;
  /** A connection closed since the last {@link takeLostReplies}: a reply may have been lost with it. */
  #lostReplies = false;

  /** The blocking reads on a Cluster, made by the first. */
  #shards: ClusterBlocker | undefined;

  constructor(options: ConnectOptions, prefix: string, consumer: string, control: RedisClient) {
    this.#options = options;
    this.#prefix = prefix;
    this.#consumer = consumer;
    this.#control = control;
  }

  /** When the block in progress gives up, ms since epoch; 0 when none is in progress. */
  get blockingUntil(): number {
    return this.#until;
  }

  /** True once, after a connection closed with a read possibly on it. */
  takeLostReplies(): boolean {
    const lost = this.#lostReplies;
    this.#lostReplies = false;
    return lost;
  }

  /** Notes that a read's reply may have been lost on another connection (the command one). */
  noteLostReply(): void {
    this.#lostReplies = true;
  }

  /** Reads new entries of `streams` into `out`, waiting up to `waitMs` for some to arrive. */
  async read(streams: string[], count: number, waitMs: number, out: Array<Delivery | MalformedDelivery>): Promise<void> {
    if (isCluster(this.#control)) return await this.#readShards(this.#control, streams, count, waitMs, out);
    const conn = this.#connection();
    if (this.#id === undefined) {
      // Pipelined before the read, so it costs no round trip of its own; needed only once per connection.
      conn.client("ID").then((id) => (this.#id = Number(id)), () => undefined);
    }
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    this.#until = Date.now() + waitMs;
    let res: [string, Entry[]][] | null;
    try {
      res = (await conn.xreadgroup("GROUP", GROUP, this.#consumer, "COUNT", count, "BLOCK", waitMs,
        "STREAMS", ...streams, ...streams.map(() => ">"))) as [string, Entry[]][] | null;
    } finally {
      this.#until = 0;
      this.#woken = false;
    }
    for (const [stream, entries] of res ?? []) decodeEntries(out, queueOfStream(this.#prefix, stream), stream, entries);
  }

  async #readShards(cluster: Cluster, streams: string[], count: number, waitMs: number,
    out: Array<Delivery | MalformedDelivery>): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    this.#shards ??= new ClusterBlocker(cluster, this.#prefix, this.#consumer, () => (this.#lostReplies = true));
    this.#until = Date.now() + waitMs;
    try {
      await this.#shards.read(streams, count, waitMs, out);
    } finally {
      this.#until = 0;
      this.#woken = false;
    }
  }

  /** Ends the block in progress (or the next one, if it has not begun) without losing its reply. */
  wake(): void {
    this.#woken = true;
    if (this.#until === 0) return;
    if (this.#shards) return this.#shards.wake();
    void this.#unblock(5);
  }

  async #unblock(tries: number): Promise<void> {
    const id = this.#id;
    if (id === undefined) return; // a new connection: the block ends by itself within its wait
    const until = this.#until;
    const done = await this.#control.client("UNBLOCK", id, "TIMEOUT").catch(() => 1);
    // 0: the read had not reached Redis yet. Try again shortly, while that same block is on.
    if (Number(done) === 0 && tries > 1 && this.#until === until && until > 0) {
      await new Promise((r) => setTimeout(r, 2));
      if (this.#until === until) await this.#unblock(tries - 1);
    }
  }

  #connection(): RedisClient {
    if (this.#conn) return this.#conn;
    const conn = connect({ ...this.#options, patient: true }, "dray-block");
    conn.on("close", () => {
      this.#id = undefined;
      if (this.#until > 0) this.#lostReplies = true;
    });
    return (this.#conn = conn);
  }

  /** Drops the connection: shutdown, when waiting for Redis to answer an unblock is not an option. */
  close(): void {
    this.#shards?.close();
    this.#conn?.disconnect();
    this.#conn = undefined;
    this.#id = undefined;
  }
}

