import type { Cron } from "croner";
import { lazy } from "../runtime/mod.ts";
import { z } from "zod";
import type { Actor } from "../actor.ts";
import { ConfigError } from "../errors.ts";
import { NAME_PATTERN } from "../message.ts";

export type CatchUp = "none" | "last" | "all";

/** The options of `cron()`; every one may be left out. */
export interface CronOptionsInput {
  /** Identifies the cron in Redis (last tick, lock, history) and in the CLI. @default the actor's name */
  name?: string;
  /** IANA zone the expression is read in, e.g. "Europe/Paris"; DST is handled by croner. @default UTC */
  timezone?: string;
  /**
   * Overlap lock, ms: a run takes it for this long and renews it every lockTtl/3 while it goes on; a
   * run that finds it held is recorded SKIPPED and not executed. Released when the run ends; expires
   * this long after its holder died. 0: no lock, runs may overlap. @default the actor's timeLimit
   */
  lockTtl?: number;
  /** What each run's handler gets; checked against the actor's schema here. @default undefined */
  payload?: unknown;
  /**
   * Ticks missed while no ticker was up: "none" skips them, "last" runs the newest one, "all" runs
   * them (the newest `maxCatchUp`). A tick counts as missed once the tick after it is due too, or
   * when it is over a minute late. Caught-up jobs are enqueued together, so under the overlap lock
   * those that start while another runs are SKIPPED; with "all", consider `lockTtl: 0`. @default "none"
   */
  catchUp?: CatchUp;
  /** Cap on the ticks one catch-up runs with `catchUp: "all"`. @default 100 */
  maxCatchUp?: number;
  /** Runs kept in the history of this cron (older ones are trimmed). @default 1000 */
  historySize?: number;
}

/** What the schema returns: the input with its defaults filled in (the rest `cron()` resolves itself). */
type ParsedCronOptions = CronOptionsInput & Required<Pick<CronOptionsInput, "catchUp" | "maxCatchUp" | "historySize">>;

// Typed by the interface, so the compiler checks that what the schema accepts and returns fits it.
const optionsSchema: z.ZodType<ParsedCronOptions, CronOptionsInput> = z.strictObject({
  name: z.string().regex(NAME_PATTERN, "1-200 letters, digits and _ . : -").optional(),
  timezone: z.string().min(1).optional(),
  lockTtl: z.number().int().nonnegative().optional(),
  payload: z.unknown().optional(),
  catchUp: z.enum(["none", "last", "all"]).default("none"),
  maxCatchUp: z.number().int().positive().max(10_000).default(100),
  historySize: z.number().int().positive().max(1_000_000).default(1000),
});

export interface CronOptions {
  timezone: string | undefined;
  lockTtl: number;
  payload: unknown;
  catchUp: CatchUp;
  maxCatchUp: number;
  historySize: number;
}

/** A registered cron: what `cron()` returns. */
export interface CronJob {
  readonly name: string;
  readonly expression: string;
  readonly actor: Actor;
  readonly options: CronOptions;
  /** The first tick strictly after `after` (ms since epoch), or undefined when there is none. */
  nextTick(after: number): number | undefined;
  /** Up to `n` ticks at or before `atOrBefore`, newest first. */
  previousTicks(n: number, atOrBefore: number): number[];
}

/** Crons defined in this process, by name. Every ticker in every worker and scheduler reads it. */
export const crons: Map<string, CronJob> = new Map();

/**
 * Runs `target` on a schedule: `cron("0 6 * * *", collectReports, { timezone: "Europe/Paris" })`.
 * Five fields (minute precision) or six (seconds first); croner's syntax, including `L`, `W` and `#`.
 * Each tick is enqueued once across all tickers (embedded in workers, or `dray scheduler`) and then
 * runs like any job of the actor: retries, time limit, dead letters.
 */
export function cron(expression: string, target: Actor, options: CronOptionsInput = {}): CronJob {
  const label = `cron ${JSON.stringify(expression)}`;
  if (typeof expression !== "string") throw new ConfigError(`${label}: the expression must be a string`);
  if (!target || typeof target.send !== "function" || typeof target.name !== "string") {
    throw new ConfigError(`${label}: the second argument must be an actor (what actor() returns)`);
  }
  const parsed = optionsSchema.safeParse(options ?? {});
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join(".") || "options"}: ${i.message}`).join("; ");
    throw new ConfigError(`${label} for actor "${target.name}" has invalid options: ${detail}`);
  }
  const o = parsed.data;
  const name = o.name ?? target.name;
  if (o.timezone !== undefined) checkTimezone(label, o.timezone);
  const schedule = parse(label, expression, o.timezone);
  checkPayload(label, target, o.payload);
  if (crons.has(name)) {
    throw new ConfigError(`${label}: a cron named "${name}" is already defined; give one of them a \`name\``);
  }
  const job: CronJob = {
    name,
    expression,
    actor: target,
    options: {
      timezone: o.timezone,
      lockTtl: o.lockTtl ?? target.options.timeLimit,
      payload: o.payload,
      catchUp: o.catchUp,
      maxCatchUp: o.maxCatchUp,
      historySize: o.historySize,
    },
    nextTick: (after) => schedule.nextRun(new Date(after))?.getTime(),
    // croner leaves out a run exactly at the reference, so look from one ms later.
    previousTicks: (n, atOrBefore) => schedule.previousRuns(n, new Date(atOrBefore + 1)).map((d) => d.getTime()),
  };
  crons.set(name, job);
  return job;
}

/** Loaded by the first cron defined: see `lazy`. */
const croner = lazy<typeof import("croner")>("croner");

/** A paused croner schedule (it never fires: dray only asks it for tick times). */
export function parse(label: string, expression: string, timezone: string | undefined): Cron {
  let schedule: Cron;
  try {
    schedule = new (croner().Cron)(expression.trim(), { paused: true, mode: "5-or-6-parts", ...(timezone ? { timezone } : {}) });
  } catch (error) {
    throw new ConfigError(`${label} is invalid: ${(error as Error).message}`, { cause: error });
  }
  // An expression like "0 0 30 2 *" parses but never fires: better to say so now than to wait forever.
  if (!schedule.nextRun()) throw new ConfigError(`${label} never fires`);
  return schedule;
}

function checkTimezone(label: string, timezone: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch (error) {
    throw new ConfigError(`${label}: unknown timezone "${timezone}" (use an IANA name like "Europe/Paris")`, { cause: error });
  }
}

function checkPayload(label: string, target: Actor, payload: unknown): void {
  if (payload !== undefined && JSON.stringify(payload) === undefined) {
    throw new ConfigError(`${label}: the payload is not JSON-serializable`);
  }
  try {
    target.validate(payload);
  } catch (error) {
    throw new ConfigError(`${label}: the payload does not fit actor "${target.name}": ${(error as Error).message}`, { cause: error });
  }
}
