import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { serveDashboard } from "../dashboard/mod.ts";
import { UsageError } from "../errors.ts";
import { NAME_PATTERN } from "../message.ts";
import { onShutdownSignal } from "../runtime/mod.ts";
import { useCliLogger } from "./log_format.ts";
import { helpRequested } from "./usage.ts";

export const usage = `usage: dray dashboard [--port 8080] [--host 127.0.0.1] [--prefix dray]

A web page for queues, jobs, dead letters, crons, workers and per-actor statistics, refreshed live.

Pause, resume, requeue and purge need a token: start it with DRAY_DASHBOARD_TOKEN set, and type the
same token into the page once (it stays in that browser tab). Without a token the page is
read-only. It binds 127.0.0.1 unless told otherwise, and refuses any other address without a token.

options:
  --port N       the port to listen on, 0 for any free one (default 8080)
  --host ADDR    the address to bind (default 127.0.0.1)
  --prefix P     the key prefix of the app to show (default DRAY_PREFIX, else dray)
  -h, --help     this help

environment: REDIS_URL, DRAY_PREFIX, DRAY_DASHBOARD_TOKEN (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values } = parseArgs({
    args,
    options: { port: { type: "string" }, host: { type: "string" }, prefix: { type: "string" } },
  });
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!/^\d+$/.test(values.port ?? "0") || port > 65_535) throw new UsageError(`--port must be a port number (0-65535), not "${values.port}"`);
  if (values.prefix !== undefined && !NAME_PATTERN.test(values.prefix)) throw new UsageError(`--prefix "${values.prefix}" is not a key prefix: letters, digits and _ . : -`);
  useCliLogger();
  const s = settings();
  const logger = s.logger;
  const broker = new RedisBroker({ url: s.redisUrl, prefix: values.prefix ?? s.prefix, autoPipelining: true, logger });
  try {
    const server = await serveDashboard({ broker, port, host: values.host ?? "127.0.0.1", logger });
    console.log(`dray dashboard on ${server.url}${server.readOnly ? " (read-only: no DRAY_DASHBOARD_TOKEN)" : ""}`);
    await new Promise<void>((resolve) => {
      const off = onShutdownSignal(() => {
        off();
        resolve();
      });
    });
    await server.close();
  } finally {
    await broker.close();
  }
}
