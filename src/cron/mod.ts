import type { Logger } from "pino";
import type { Broker } from "../broker/types.ts";
import type { Middleware } from "../middleware.ts";
import { crons } from "./cron.ts";
import { cronRuns } from "./runs.ts";
import { cronStoreFor } from "./stores.ts";
import { Ticker } from "./ticker.ts";

/** What cron adds to a worker. */
export interface WorkerCron {
  /** The overlap lock and run history; appended to the worker's middleware. */
  middleware: Middleware[];
  /** Starts the embedded ticker (after the supervisor, so the worker is up when ticks arrive). */
  start(): void;
  /** Stops the ticker; called first on shutdown so a stopping worker enqueues no more ticks. */
  stop(): Promise<void>;
}

/**
 * Cron inside a worker: the run middleware whenever the app defines crons (a `--no-cron` worker
 * still runs cron jobs, and must lock and record them), and a ticker unless `tick` is false.
 */
export function cronForWorker(options: { broker: Broker; logger: Logger; tick: boolean }): WorkerCron {
  const { broker, logger } = options;
  if (crons.size === 0) return { middleware: [], start() {}, async stop() {} };
  const store = cronStoreFor(broker);
  if (!store) {
    logger.warn({ crons: [...crons.keys()] }, "this broker keeps no cron state: no ticker, overlap lock nor history here");
    return { middleware: [], start() {}, async stop() {} };
  }
  const middleware = [cronRuns({ store, logger, jobs: crons })];
  const ticker = options.tick ? new Ticker({ store, jobs: crons, logger }) : undefined;
  return {
    middleware,
    start: () => ticker?.start(),
    stop: async () => await ticker?.stop(),
  };
}
