import type { Logger } from "pino";
import type { Message } from "../message.ts";
import type { CronJob } from "./cron.ts";
import { planTicks } from "./plan.ts";
import type { CronStore, CronWrite } from "./store.ts";

type Note = { job: CronJob; ticks: number[]; caughtUp: number; skipped: number; first?: boolean };

export interface TickerOptions {
  /** Where the last ticks live (Redis: one that waits out outages, as a worker's broker connection does). */
  store: CronStore;
  jobs: ReadonlyMap<string, CronJob>;
  logger: Logger;
}

/** Look again at least this often, ms, even when the next tick is far off (cheap: one round trip). */
const MAX_SLEEP = 30_000;

/**
 * Enqueues each cron's ticks as they come due. Any number of tickers (one in every worker, plus
 * `dray scheduler` processes) may run at once: time is the store's clock, not ours, and a tick is
 * claimed and enqueued in one atomic step that moves the cron's last tick handled forward, so each
 * tick is enqueued once whoever gets there first (see {@link CronStore}).
 */
export class Ticker {
  readonly #o: TickerOptions;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: TickerOptions) {
    this.#o = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops ticking; waits for a tick in flight, but not for a Redis that is away. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#loop, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
  }

  async #run(): Promise<void> {
    const { logger, jobs } = this.#o;
    // A ticker that started while Redis was away publishes its crons once a tick went through: the
    // list is what `dray cron` and the dashboard show, and nothing else would write it again.
    let published = await this.#publish(true);
    logger.info({ crons: [...jobs.keys()] }, "cron ticker started");
    let failures = 0;
    while (!this.#stopping) {
      let wait: number;
      try {
        wait = await this.tick();
        if (failures > 0) logger.info({ failures }, "redis is back; ticking again");
        failures = 0;
        if (!published) published = await this.#publish(false);
      } catch (error) {
        if (this.#stopping) break;
        failures++;
        if (failures === 1 || failures % 20 === 0) logger.warn({ err: error, failures }, "cron tick failed; backing off");
        wait = Math.min(100 * 2 ** Math.min(failures, 6), 5_000);
      }
      await this.#sleep(wait);
    }
    logger.info("cron ticker stopped");
  }

  /** Publishes the crons for the tools; false if that failed (warned about on the first try only). */
  async #publish(first: boolean): Promise<boolean> {
    try {
      await this.#o.store.publish(this.#o.jobs.values());
      if (!first) this.#o.logger.info("crons published");
      return true;
    } catch (error) {
      if (first) this.#o.logger.warn({ err: error }, "publishing crons failed; trying again after the next tick");
      return false;
    }
  }

  /** One pass: enqueue whatever is due; returns how long to sleep until the next tick is due, ms. */
  async tick(): Promise<number> {
    const { store, logger } = this.#o;
    const jobs = [...this.#o.jobs.values()];
    const { now, last } = await store.read(jobs);
    const readAt = Date.now();
    const writes: CronWrite[] = [];
    const notes: Note[] = [];
    let next = now + MAX_SLEEP;
    jobs.forEach((job, i) => {
      const seen = last[i];
      if (seen === undefined) {
        // First ticker ever to see this cron: start counting from now (unless another just did).
        writes.push({ kind: "begin", job, now });
        notes.push({ job, ticks: [], caughtUp: 0, skipped: 0, first: true });
      } else {
        const plan = planTicks(job, seen, now);
        if (plan.last > seen) {
          writes.push({ kind: "claim", job, newLast: plan.last, messages: tickMessages(job, plan.ticks) });
          notes.push({ job, ticks: plan.ticks, caughtUp: plan.caughtUp, skipped: plan.skipped });
        }
      }
      next = Math.min(next, job.nextTick(now) ?? next);
    });
    if (writes.length > 0) {
      const replies = await store.write(writes);
      replies.forEach((reply, i) => this.#log(logger, notes[i]!, reply));
    }
    // Sleep by our clock for what remains by the store's clock: skew between the two does not matter.
    return Math.max(0, next - now - (Date.now() - readAt)) + 1;
  }

  /** `reply`: what the store answered to this note's write (see CronStore.write). */
  #log(logger: Logger, note: Note, reply: number): void {
    const { job, ticks, caughtUp, skipped } = note;
    const when = (t: number) => new Date(t).toISOString();
    if (note.first) {
      if (reply === 1) logger.info({ cron: job.name, expression: job.expression }, "new cron: ticking from now on");
      return;
    }
    const sent = reply;
    if (sent < 0) return; // another ticker got there first and logs it
    if (skipped > 0) {
      logger.info({ cron: job.name, skipped, catchUp: job.options.catchUp }, "missed cron ticks passed over");
    }
    if (caughtUp > 0 && sent > 0) {
      logger.info({ cron: job.name, ticks: ticks.map(when), sent }, "caught up missed cron ticks");
    } else if (sent > 0 && logger.isLevelEnabled("debug")) {
      logger.debug({ cron: job.name, tick: when(ticks.at(-1)!) }, "cron tick enqueued");
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.min(ms, MAX_SLEEP));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

/** The jobs of `ticks`: one per tick, its id made of (cron, tick) so that a tick is never sent twice. */
export function tickMessages(job: CronJob, ticks: number[]): Message[] {
  const a = job.actor;
  return ticks.map((tick): Message => ({
    id: `cron:${job.name}:${tick}`,
    actor: a.name,
    queue: a.options.queue,
    payload: job.options.payload,
    priority: a.options.priority,
    sentAt: Date.now(),
    dedup: true,
    cron: { name: job.name, tick },
  }));
}
