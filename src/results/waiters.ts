import { FINISHED, type JobRecord, type WaitResult } from "./types.ts";

type Fetch = (queue: string, id: string) => Promise<JobRecord | undefined>;

interface Waiting {
  queue: string;
  id: string;
  resolvers: Set<(result: WaitResult) => void>;
}

/**
 * The callers waiting on jobs in one process, by job. A store tells it which jobs may have changed
 * (a pub/sub message, a reconnect) and it reads each of those records once for all its waiters, so
 * a hundred waiters on one job cost one read per change, and nobody polls.
 */
export class Waiters {
  readonly #waiting = new Map<string, Waiting>();
  readonly #fetch: Fetch;
  readonly #onIdle: (queue: string) => void;

  /** `onIdle` is told when no one waits on a queue any more (to unsubscribe from it). */
  constructor(fetch: Fetch, onIdle: (queue: string) => void = () => {}) {
    this.#fetch = fetch;
    this.#onIdle = onIdle;
  }

  /** Call once the store will report changes for `queue` (subscribed), so none is missed. */
  wait(queue: string, id: string, timeoutMs?: number): Promise<WaitResult> {
    const key = `${queue}\u0000${id}`;
    return new Promise<WaitResult>((resolve, reject) => {
      let waiting = this.#waiting.get(key);
      if (!waiting) this.#waiting.set(key, (waiting = { queue, id, resolvers: new Set() }));
      const entry = waiting;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (result: WaitResult) => {
        clearTimeout(timer);
        if (!entry.resolvers.delete(done)) return;
        if (entry.resolvers.size === 0 && this.#waiting.get(key) === entry) {
          this.#waiting.delete(key);
          if (!this.#queueWaited(queue)) this.#onIdle(queue);
        }
        resolve(result);
      };
      entry.resolvers.add(done);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#fetch(queue, id).then(
            (record) => done(!record ? { kind: "unknown" } : FINISHED.has(record.status)
              ? { kind: "finished", record } : { kind: "timeout", record }),
            () => done({ kind: "timeout" }),
          );
        }, timeoutMs);
      }
      // The first look: the job may be finished already, or unknown. Registered before looking, so
      // a change reported meanwhile is not lost.
      this.#fetch(queue, id).then((record) => {
        if (!record) done({ kind: "unknown" });
        else if (FINISHED.has(record.status)) done({ kind: "finished", record });
      }, (error) => {
        clearTimeout(timer);
        entry.resolvers.delete(done);
        if (entry.resolvers.size === 0) this.#waiting.delete(key);
        reject(error);
      });
    });
  }

  /** These jobs may have finished: read each waited one once and resolve its waiters if so. */
  changed(queue: string, ids: Iterable<string>): void {
    for (const id of ids) {
      const entry = this.#waiting.get(`${queue}\u0000${id}`);
      if (entry) this.#check(entry);
    }
  }

  /** Something may have been missed (a reconnect): look at every waited job again. */
  recheck(): void {
    for (const entry of this.#waiting.values()) this.#check(entry);
  }

  queues(): Set<string> {
    return new Set([...this.#waiting.values()].map((w) => w.queue));
  }

  #queueWaited(queue: string): boolean {
    for (const w of this.#waiting.values()) if (w.queue === queue) return true;
    return false;
  }

  #check(entry: Waiting): void {
    this.#fetch(entry.queue, entry.id).then((record) => {
      const result: WaitResult | undefined = !record ? { kind: "unknown" }
        : FINISHED.has(record.status) ? { kind: "finished", record } : undefined;
      if (result) for (const resolve of [...entry.resolvers]) resolve(result);
    }, () => {
      // Redis is away: the reconnect triggers a recheck, and the timeout still applies.
    });
  }
}
