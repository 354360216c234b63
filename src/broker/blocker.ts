import { connect, decodeEntries, type ConnectOptions, type Entry, type RedisClient } from "./connection.ts";
import { isCluster } from "./cluster.ts";
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
 * Not yet on a Redis Cluster: one XREADGROUP cannot name the streams of queues in different slots,
 * and a block on the shared Cluster client would hold up every command to that node. There it waits
 * a little instead (at most {@link CLUSTER_POLL_MS}, woken as a block would be), and the broker's
 * next read, which does not block, finds what arrived meanwhile.
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

  /** Ends the pause that stands for a block on a Cluster. */
  #endPause: (() => void) | undefined;

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
    if (isCluster(this.#control)) return await this.#pause(Math.min(waitMs, CLUSTER_POLL_MS));
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

  /** The stand-in for a block on a Cluster: a wait that {@link wake} ends. */
  async #pause(ms: number): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    this.#until = Date.now() + ms;
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.#endPause = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    } finally {
      this.#until = 0;
      this.#woken = false;
      this.#endPause = undefined;
    }
  }

  /** Ends the block in progress (or the next one, if it has not begun) without losing its reply. */
  wake(): void {
    this.#woken = true;
    if (this.#endPause) return this.#endPause();
    if (this.#until === 0) return;
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
    this.#endPause?.();
    this.#conn?.disconnect();
    this.#conn = undefined;
    this.#id = undefined;
  }
}

/** How long a read waits on a Cluster, where it cannot block yet, before the broker reads again. */
const CLUSTER_POLL_MS = 100;
