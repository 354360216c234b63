/**
 * The cron ticker in a process that runs no jobs: `dray scheduler`, and the parent of
 * `dray worker --processes N` (whose children get --no-cron, so that the group ticks from one place).
 */
import type { Logger } from "pino";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { crons } from "../cron/cron.ts";
import { cronStoreFor } from "../cron/stores.ts";
import { Ticker } from "../cron/ticker.ts";

export interface StandaloneTicker {
  /** Its own connection, patient through Redis outages as a worker's is. */
  broker: RedisBroker;
  start(): void;
  /** Stops ticking (a tick in flight finishes) and closes the connection. */
  stop(): Promise<void>;
}

/** A ticker for the crons the loaded modules define; not started. */
export function standaloneTicker(logger: Logger): StandaloneTicker {
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix, patient: true, logger });
  const ticker = new Ticker({ store: cronStoreFor(broker), jobs: crons, logger });
  return {
    broker,
    start: () => ticker.start(),
    stop: async () => {
      await ticker.stop();
      await broker.close();
    },
  };
}
