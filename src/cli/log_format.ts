/**
 * How `dray <command>` logs: pino-pretty for a person at a terminal, JSON lines for a machine (a
 * pipe, a file, a log collector). `DRAY_LOG_FORMAT=pretty|json` overrides the guess. The library's
 * own default stays JSON unless that variable says otherwise (src/logger.ts): only the CLI guesses.
 */
import { configure } from "../config.ts";
import { createLogger, logFormatSetting, type LogFormat } from "../logger.ts";
import { setEnv, stdoutIsTty } from "../runtime/mod.ts";

export function logFormat(): LogFormat {
  return logFormatSetting() ?? (stdoutIsTty() ? "pretty" : "json");
}

/**
 * Called by the commands that log, once their flags are read and before anything logs. The choice
 * goes into the environment too: pool threads and child processes cannot see the terminal (their
 * stdout is a pipe to this process), and build their logger from `DRAY_LOG_FORMAT`.
 */
export function useCliLogger(): void {
  const format = logFormat();
  setEnv("DRAY_LOG_FORMAT", format);
  if (format === "pretty") configure({ logger: createLogger(format) });
}
