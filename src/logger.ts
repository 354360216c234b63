import type { Logger } from "pino";
import { env, lazy } from "./runtime/mod.ts";

/** Loaded by the first logger made: see `lazy`. */
export const pino = lazy<typeof import("pino")>("pino");

/**
 * The default logger: JSON to stdout at `DRAY_LOG_LEVEL` (default "info"). A library configures no
 * transports; pass your own pino logger to `configure({ logger })` to route logs elsewhere.
 */
export function createLogger(): Logger {
  return pino().pino({ name: "dray", level: env("DRAY_LOG_LEVEL") || "info" });
}
