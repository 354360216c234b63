import { pino, type Logger } from "pino";
import { env } from "./runtime/mod.ts";

/**
 * The default logger: JSON to stdout at `DRAY_LOG_LEVEL` (default "info"). A library configures no
 * transports; pass your own pino logger to `configure({ logger })` to route logs elsewhere.
 */
export function createLogger(): Logger {
  return pino({ name: "dray", level: env("DRAY_LOG_LEVEL") || "info" });
}
