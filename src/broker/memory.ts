import { MemoryControl } from "./control.ts";
import { MemoryHistory } from "./history.ts";
import { MalformedMessageError, type SerializedError } from "../errors.ts";
import { decodeMessage, encodeMessage, type Delivery, type DeliveryRef, type MalformedDelivery, type Message } from "../message.ts";
import { pendingRecord } from "../results/record.ts";
import { MemoryJobStore } from "../results/memory.ts";
import type { JobRecord } from "../results/types.ts";
import type { Acked, ActorMeta, Broker, BrowsedJob, BrowseOptions, Control, DeadLetter, JobState, LimitRule, Page, QueueStats,
  RateLimits, RetryOptions, SendRequest } from "./types.ts";
import { browseMemory, findInMemory } from "./memory_browse.ts";

interface Entry {
  entryId: string;
  body: string;
  retries: number;
}

interface Pending {
  entry: Entry;
  priority: number;
  claimedAt: number;
  /** Claims lost so far (taken back after the visibility timeout). */
  lost: number;
  /**
   * Which claim holds it now: a reclaim makes a new one, and only the delivery of the current claim
   * may settle or renew it (as only the consumer holding an entry may, on Redis).
   */
  claim: number;
}

interface QueueState {
  ready: Map<number, Entry[]>;
  pending: Map<string, Pending>;
  delayed: Array<{ due: number; priority: number; entry: Entry }>;
  dlq: DeadLetter[];
}

/**
 * A broker in memory, for users' own unit tests (like Dramatiq's StubBroker): same semantics as the
 * Redis broker (priorities, delays, dedup, visibility timeout, dead letters), no server. Use it with
 * `setBroker()` and run queued jobs with `drain()`.
 */
export class MemoryBroker implements Broker {
  readonly prefix: string;
  readonly visibilityTimeout: number;
  readonly jobs: MemoryJobStore = new MemoryJobStore();
  readonly limits: RateLimits = new MemoryLimits();
  readonly control: Control = new MemoryControl();
  readonly history: MemoryHistory = new MemoryHistory();
  readonly #queues = new Map<string, QueueState>();
  /** Held jobIds: until when (ms; Infinity while the job is known) and the sentAt of the holder. */
  readonly #dedup = new Map<string, { until: number; holder: number }>();
  readonly #actors = new Map<string, ActorMeta>();
  readonly #waiters = new Set<() => void>();
  #seq = 0;

  constructor(options: { prefix?: string; visibilityTimeout?: number } = {}) {
    this.prefix = options.prefix ?? "memory";
    this.visibilityTimeout = options.visibilityTimeout ?? 10_000;
  }

  #q(queue: string): QueueState {
    let q = this.#queues.get(queue);
    if (!q) this.#queues.set(queue, (q = { ready: new Map(), pending: new Map(), delayed: [], dlq: [] }));
    return q;
  }

  #entryId(): string {
    return `${Date.now()}-${this.#seq++}`;
  }

  #push(queue: string, priority: number, entry: Entry): void {
    const q = this.#q(queue);
    const list = q.ready.get(priority) ?? [];
    list.push(entry);
    q.ready.set(priority, list);
    for (const wake of this.#waiters) wake();
  }

  /** Adds a raw entry as another program might XADD it (for testing malformed input). */
  addRaw(queue: string, body: string, priority = 0): void {
    this.#push(queue, priority, { entryId: this.#entryId(), body, retries: 0 });
  }

  async enqueue(requests: SendRequest[]): Promise<boolean[]> {
    return requests.map(({ message, delay, at }) => {
      const key = dedupKey(message.queue, message.id);
      if (message.dedup) {
        const held = this.#dedup.get(key);
        if (held !== undefined && held.until > Date.now()) return false;
        this.#hold(message);
      }
      const entry = { entryId: this.#entryId(), body: encodeMessage(message), retries: 0 };
      const due = delay !== undefined ? Date.now() + delay : at;
      if (message.tracked) this.jobs.put(pendingRecord(message, due));
      if (due !== undefined) this.#q(message.queue).delayed.push({ due, priority: message.priority, entry });
      else this.#push(message.queue, message.priority, entry);
      return true;
    });
  }

  async read(queues: string[], count: number, blockMs: number): Promise<Array<Delivery | MalformedDelivery>> {
    const out = this.#take(queues, count);
    if (out.length > 0 || blockMs <= 0) return out;
    const nextDue = Math.min(...queues.flatMap((q) => this.#q(q).delayed.map((d) => d.due)));
    const wait = Math.max(1, Math.min(blockMs, nextDue - Date.now()));
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, wait);
      this.#waiters.add(wake);
    });
    return this.#take(queues, count);
  }

  #take(queues: string[], count: number): Array<Delivery | MalformedDelivery> {
    const now = Date.now();
    const out: Array<Delivery | MalformedDelivery> = [];
    for (const queue of queues) {
      const q = this.#q(queue);
      const due = q.delayed.filter((d) => d.due <= now);
      q.delayed = q.delayed.filter((d) => d.due > now);
      for (const d of due) this.#push(queue, d.priority, { ...d.entry, entryId: this.#entryId() });
      for (const [entryId, p] of q.pending) {
        if (out.length >= count) break;
        if (now - p.claimedAt < this.visibilityTimeout) continue;
        p.claimedAt = now; // reclaimed: delivered again
        p.lost++;
        p.claim++;
        out.push(this.#decode(queue, p.priority, { ...p.entry, entryId }, p.lost, p.claim));
      }
      for (const priority of [...q.ready.keys()].sort((a, b) => b - a)) {
        const list = q.ready.get(priority)!;
        while (list.length > 0 && out.length < count) {
          const entry = list.shift()!;
          q.pending.set(entry.entryId, { entry, priority, claimedAt: now, lost: 0, claim: 0 });
          const d = this.#decode(queue, priority, entry);
          if (!("malformed" in d) && d.message.tracked) this.jobs.markRunning(queue, d.message.id);
          out.push(d);
        }
      }
    }
    return out;
  }

  #decode(queue: string, priority: number, entry: Entry, lost = 0, claim = 0): Delivery | MalformedDelivery {
    const ref = { stream: `${queue}:${priority}`, entryId: entry.entryId, claim };
    try {
      const message = decodeMessage(entry.body, queue);
      return lost > 0 ? { message, retries: entry.retries, lost, ref } : { message, retries: entry.retries, ref };
    } catch (error) {
      const e = error instanceof MalformedMessageError ? error : new MalformedMessageError(String(error));
      return { malformed: true, raw: { m: entry.body }, error: e, ref, queue };
    }
  }

  /** The pending entry `ref` names, if `ref`'s claim still holds it. */
  #held(ref: DeliveryRef): Pending | undefined {
    const queue = ref.stream.slice(0, ref.stream.lastIndexOf(":"));
    const p = this.#q(queue).pending.get(ref.entryId);
    return p && p.claim === (ref.claim ?? 0) ? p : undefined;
  }

  /** Removes an entry from pending; undefined when its claim is not `ref`'s (reclaimed or settled). */
  #release(ref: DeliveryRef): Pending | undefined {
    const p = this.#held(ref);
    if (p) this.#q(ref.stream.slice(0, ref.stream.lastIndexOf(":"))).pending.delete(ref.entryId);
    return p;
  }

  #settleDedup(queue: string, id: string, keepMs: number): void {
    const key = dedupKey(queue, id);
    const held = this.#dedup.get(key);
    if (keepMs > 0 && held) held.until = Date.now() + keepMs;
    else this.#dedup.delete(key);
  }

  async ack(done: Acked[]): Promise<DeliveryRef[]> {
    const lost: DeliveryRef[] = [];
    for (const { delivery, keepMs, record } of done) {
      if (!this.#release(delivery.ref)) {
        lost.push(delivery.ref);
        continue;
      }
      const { message } = delivery;
      if (message.dedup) this.#settleDedup(message.queue, message.id, keepMs);
      if (message.tracked || record) this.jobs.finish(message.queue, message.id, record, keepMs);
    }
    return lost;
  }

  async retry(delivery: Delivery, delayMs: number, options: RetryOptions = {}): Promise<boolean> {
    const p = this.#release(delivery.ref);
    if (!p) return false;
    const { message } = delivery;
    this.#q(message.queue).delayed.push({
      due: Date.now() + delayMs, priority: p.priority,
      entry: { ...p.entry, body: encodeMessage(message), retries: delivery.retries + (options.charge === false ? 0 : 1) },
    });
    if (options.record) this.jobs.put(options.record);
    if (message.tracked || options.record) this.jobs.notRunning(message.queue, message.id);
    return true;
  }

  async deadLetter(delivery: Delivery | MalformedDelivery, error: SerializedError, keepMs = 0, record?: JobRecord): Promise<boolean> {
    if (!this.#release(delivery.ref)) return false;
    const malformed = "malformed" in delivery;
    const queue = malformed ? delivery.queue : delivery.message.queue;
    this.#q(queue).dlq.push({
      id: this.#entryId(), queue, error, at: Date.now(),
      message: malformed ? { raw: delivery.raw.m ?? JSON.stringify(delivery.raw) } : delivery.message,
      retries: malformed ? 0 : delivery.retries,
    });
    if (!malformed && delivery.message.dedup) this.#settleDedup(queue, delivery.message.id, keepMs);
    if (!malformed && (delivery.message.tracked || record)) this.jobs.finish(queue, delivery.message.id, record, keepMs);
    return true;
  }

  async giveBack(deliveries: Delivery[]): Promise<DeliveryRef[]> {
    const lost: DeliveryRef[] = [];
    for (const d of deliveries) {
      const p = this.#release(d.ref);
      if (!p) lost.push(d.ref);
      if (p) this.#push(d.message.queue, p.priority, { ...p.entry, entryId: this.#entryId() });
      if (p && d.message.tracked) this.jobs.notRunning(d.message.queue, d.message.id);
    }
    return lost;
  }

  async extend(refs: DeliveryRef[]): Promise<DeliveryRef[]> {
    const now = Date.now();
    const lost: DeliveryRef[] = [];
    for (const ref of refs) {
      const p = this.#held(ref);
      if (p) p.claimedAt = now;
      else lost.push(ref);
    }
    return lost;
  }

  async publishActors(actors: ActorMeta[]): Promise<void> {
    for (const a of actors) {
      this.#actors.set(a.name, a);
      this.#q(a.queue);
    }
  }

  async lookupActor(name: string): Promise<ActorMeta | undefined> {
    return this.#actors.get(name);
  }

  async deadLetters(queue: string, options: { limit?: number } = {}): Promise<DeadLetter[]> {
    return this.#q(queue).dlq.slice(0, options.limit ?? 100);
  }

  async requeue(queue: string, ids?: string[]): Promise<number> {
    const q = this.#q(queue);
    // As the REQUEUE script: a letter whose jobId a newer job holds stays.
    const chosen = q.dlq.filter((l) => (!ids || ids.includes(l.id)) && !this.#heldByAnother(l));
    q.dlq = q.dlq.filter((l) => !chosen.includes(l));
    for (const l of chosen) {
      const body = "raw" in l.message ? l.message.raw : encodeMessage(l.message);
      const priority = "raw" in l.message ? 0 : l.message.priority;
      this.#push(queue, priority, { entryId: this.#entryId(), body, retries: 0 });
      if ("raw" in l.message) continue;
      // Waiting again, as the REQUEUE script has it: a sender's record, and its id held again.
      if (l.message.tracked) this.jobs.put(pendingRecord(l.message));
      if (l.message.dedup) this.#hold(l.message);
    }
    return chosen.length;
  }

  /** The message's jobId is held, by it, while the job is known. */
  #hold(message: Message): void {
    this.#dedup.set(dedupKey(message.queue, message.id), { until: Infinity, holder: message.sentAt });
  }

  #heldByAnother(l: DeadLetter): boolean {
    if ("raw" in l.message || !l.message.dedup) return false;
    const held = this.#dedup.get(dedupKey(l.message.queue, l.message.id));
    return held !== undefined && held.until > Date.now() && held.holder !== l.message.sentAt;
  }

  async purgeDeadLetters(queue: string, ids?: string[]): Promise<number> {
    const q = this.#q(queue);
    const n = q.dlq.length;
    q.dlq = ids ? q.dlq.filter((l) => !ids.includes(l.id)) : [];
    return n - q.dlq.length;
  }

  async browse(queue: string, state: JobState, options?: BrowseOptions): Promise<Page<BrowsedJob>> {
    return browseMemory(this.#queues.get(queue), queue, state, options, (q, id) => this.jobs.runningSince(q, id));
  }

  async findJob(queue: string, id: string, options?: { scanLimit?: number }): Promise<BrowsedJob | undefined> {
    return findInMemory(this.#queues.get(queue), queue, id, (q, job) => this.jobs.runningSince(q, job), options);
  }

  async stats(queue: string): Promise<QueueStats> {
    const q = this.#q(queue);
    const ready = [...q.ready.values()].reduce((n, l) => n + l.length, 0);
    return { queue, ready, running: q.pending.size, delayed: q.delayed.length, dead: q.dlq.length };
  }

  async statsMany(queues: string[]): Promise<QueueStats[]> {
    return await Promise.all(queues.map((queue) => this.stats(queue)));
  }

  async queues(): Promise<string[]> {
    return [...this.#queues.keys()].sort();
  }

  /** Makes every delayed message due now (so `drain` need not wait out backoffs). */
  promoteDelayed(): void {
    for (const q of this.#queues.values()) for (const d of q.delayed) d.due = 0;
  }

  interrupt(): void {
    for (const wake of this.#waiters) wake();
  }

  async close(): Promise<void> {
    this.interrupt();
  }
}

/** Rate-limiter slots in memory, by the same rules as the Redis script (ACQUIRE). */
class MemoryLimits implements RateLimits {
  readonly #slots = new Map<string, Map<string, number>>();

  async acquire(key: string, rule: LimitRule, token: string): Promise<number> {
    const now = Date.now();
    const slots = this.#slots.get(key) ?? new Map<string, number>();
    this.#slots.set(key, slots);
    // Concurrent: score = lease expiry; window: score = start, aged out after the window.
    const expired = (score: number) => rule.kind === "concurrent" ? score <= now : score <= now - rule.windowMs;
    for (const [t, score] of slots) if (expired(score)) slots.delete(t);
    if (slots.has(token)) return 0; // already granted to this token, as the script has it
    if (slots.size < rule.limit) {
      slots.set(token, rule.kind === "concurrent" ? now + rule.leaseMs : now);
      return 0;
    }
    if (rule.kind === "concurrent") return -1;
    return Math.max(1, Math.min(...slots.values()) + rule.windowMs - now);
  }

  async release(key: string, token: string): Promise<void> {
    this.#slots.get(key)?.delete(token);
  }
}

/** A job id as the dedup map holds it: per queue, as Redis's `{<p>:<q>}:id:<jobId>` keys are. */
function dedupKey(queue: string, id: string): string {
  return `${queue}\u0000${id}`;
}
