import { pino, type DestinationStream, type Logger } from "pino";
import { ConfigError } from "./errors.ts";
import { env, lazy } from "./runtime/mod.ts";

export type LogFormat = "pretty" | "json";

/** The part of pino-pretty's options used here (it is an optional dependency: no types required). */
interface PrettyOptions {
  sync: boolean;
  translateTime: string;
  ignore: string;
  errorLikeObjectKeys: string[];
}

export type PinoPretty = (options: PrettyOptions) => DestinationStream;

// Loaded only when pretty is asked for, so JSON runs (every deployment) never pay for it.
const loadPinoPretty = lazy<PinoPretty>("pino-pretty");

/** `DRAY_LOG_FORMAT` as set, or undefined when it is not. */
export function logFormatSetting(): LogFormat | undefined {
  const raw = env("DRAY_LOG_FORMAT");
  if (!raw) return undefined;
  if (raw !== "pretty" && raw !== "json") throw new ConfigError(`DRAY_LOG_FORMAT must be pretty or json, not "${raw}"`);
  return raw;
}

/**
 * The default logger: JSON lines to stdout at `DRAY_LOG_LEVEL` (default "info"), or pino-pretty's
 * output when `DRAY_LOG_FORMAT=pretty`. A library configures no transports: pass your own pino
 * logger to `configure({ logger })` to route logs elsewhere. The CLI sets `DRAY_LOG_FORMAT` when
 * it starts (pretty at a terminal), so that pool threads and child processes log as it does.
 */
export function createLogger(format: LogFormat = logFormatSetting() ?? "json", load: () => PinoPretty = loadPinoPretty): Logger {
  const logger = baseLogger(format, load);
  // One of the processes of `dray worker --processes N` (src/cli/fleet.ts): they share one stdout,
  // so each line says whose it is. Threads inherit the variable, so their lines say it too.
  const index = env("DRAY_PROCESS_INDEX");
  if (!index) return logger;
  return logger.child({ process: /^\d+$/.test(index) ? Number(index) : index });
}

function baseLogger(format: LogFormat, load: () => PinoPretty): Logger {
  const options = { name: "dray", level: env("DRAY_LOG_LEVEL") || "info" };
  if (format === "json") return pino(options);
  let stream: DestinationStream;
  try {
    stream = load()({
      // Written before the call returns, as pino's own stdout is: the worker ends with exit(), which
      // would cut off lines still queued, the last ("worker stopped") first.
      sync: true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname",
      // dray logs its own failures under `err` and jobs' (already serialized) under `error`: both
      // are printed as errors, their stacks as lines rather than one JSON-escaped string.
      errorLikeObjectKeys: ["err", "error"],
    });
  } catch (error) {
    const logger = pino(options);
    logger.warn({ reason: error instanceof Error ? error.message.split("\n")[0] : String(error) },
      "pretty logs need the pino-pretty package, which could not be loaded; logging JSON");
    return logger;
  }
  return pino(options, stream);
}
