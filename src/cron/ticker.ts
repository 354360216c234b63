import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { cronKeys, queueKeys } from "../broker/keys.ts";
import { encodeMessage, type Message } from "../message.ts";
import type { CronJob } from "./cron.ts";
import { publishCrons } from "./history.ts";
import { planTicks } from "./plan.ts";
import { CRON_TICK } from "./scripts.ts";

type Scripted = Redis & { drayCronTick(...args: (string | number)[]): Promise<number> };
type Note = { job: CronJob; ticks: number[]; caughtUp: number; skipped: number; first?: boolean };

export interface TickerOptions {
  /** A connection that waits out Redis outages (a worker's broker connection is one). */
  redis: Redis;
  prefix: string;
  jobs: ReadonlyMap<string, CronJob>;
  logger: Logger;
}

/** Look again at least this often, ms, even when the next tick is far off (cheap: one round trip). */
const MAX_SLEEP = 30_000;

/**
 * Enqueues each cron's ticks as they come due. Any number of tickers (one in every worker, plus
 * `dray scheduler` processes) may run at once: time is the Redis clock, not ours, and a tick is
 * claimed and enqueued by one atomic script that moves the cron's last tick handled forward, so
 * each tick is enqueued once whoever gets there first, and clock skew between machines only
 * changes who wins, never how many.
 */
export class Ticker {
  readonly #o: TickerOptions;
  readonly #redis: Scripted;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: TickerOptions) {
    this.#o = options;
    this.#redis = options.redis as Scripted;
    if (typeof this.#redis.drayCronTick !== "function") this.#redis.defineCommand("drayCronTick", { lua: CRON_TICK });
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
    await publishCrons(this.#redis, this.#o.prefix, jobs.values())
      .catch((error) => logger.warn({ err: error }, "publishing crons failed; `dray cron` needs the modules"));
    logger.info({ crons: [...jobs.keys()] }, "cron ticker started");
    let failures = 0;
    while (!this.#stopping) {
      let wait: number;
      try {
        wait = await this.tick();
        if (failures > 0) logger.info({ failures }, "redis is back; ticking again");
        failures = 0;
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

  /** One pass: enqueue whatever is due; returns how long to sleep until the next tick is due, ms. */
  async tick(): Promise<number> {
    const { prefix, logger } = this.#o;
    const jobs = [...this.#o.jobs.values()];
    const read = this.#redis.pipeline().time();
    for (const job of jobs) read.get(cronKeys(prefix, job.actor.options.queue, job.name).last);
    const replies = (await read.exec()) ?? [];
    const readAt = Date.now();
    for (const [error] of replies) if (error) throw error;
    const [sec, usec] = replies[0]![1] as [string, string];
    const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);

    const write = this.#redis.pipeline() as unknown as Scripted & { exec(): Promise<[Error | null, unknown][] | null> };
    const notes: Note[] = [];
    let next = now + MAX_SLEEP;
    jobs.forEach((job, i) => {
      const raw = replies[i + 1]![1] as string | null;
      if (raw === null) {
        // First ticker ever to see this cron: start counting from now (NX: unless another just did).
        write.set(cronKeys(prefix, job.actor.options.queue, job.name).last, now, "NX");
        notes.push({ job, ticks: [], caughtUp: 0, skipped: 0, first: true });
      } else {
        const last = Number(raw);
        const plan = planTicks(job, last, now);
        if (plan.last > last) {
          this.#claim(write, job, plan.last, plan.ticks);
          notes.push({ job, ticks: plan.ticks, caughtUp: plan.caughtUp, skipped: plan.skipped });
        }
      }
      next = Math.min(next, job.nextTick(now) ?? next);
    });
    if (notes.length > 0) {
      const results = (await write.exec()) ?? [];
      results.forEach(([error, reply], i) => {
        if (error) throw error;
        this.#log(logger, notes[i]!, reply);
      });
    }
    // Sleep by our clock for what remains by the Redis clock: skew between the two does not matter.
    return Math.max(0, next - now - (Date.now() - readAt)) + 1;
  }

  #claim(pipe: Scripted, job: CronJob, newLast: number, ticks: number[]): void {
    const a = job.actor;
    const q = queueKeys(this.#o.prefix, a.options.queue);
    const messages = ticks.map((tick): Message => ({
      id: `cron:${job.name}:${tick}`,
      actor: a.name,
      queue: a.options.queue,
      payload: job.options.payload,
      priority: a.options.priority,
      sentAt: Date.now(),
      dedup: true,
      cron: { name: job.name, tick },
    }));
    pipe.drayCronTick(3 + ticks.length,
      cronKeys(this.#o.prefix, a.options.queue, job.name).last, q.stream(a.options.priority), q.priorities,
      ...messages.map((m) => q.dedup(m.id)),
      newLast, a.options.priority, ...messages.flatMap((m) => [m.cron!.tick, encodeMessage(m)]));
  }

  #log(logger: Logger, note: Note, reply: unknown): void {
    const { job, ticks, caughtUp, skipped } = note;
    const when = (t: number) => new Date(t).toISOString();
    if (note.first) {
      if (reply === "OK") logger.info({ cron: job.name, expression: job.expression }, "new cron: ticking from now on");
      return;
    }
    const sent = Number(reply);
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
