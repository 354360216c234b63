/**
 * `dray/dashboard`: the web page for queues, jobs, dead letters, crons, workers and actors, as a
 * standard `fetch(Request) → Response` handler to mount in any server, and `serveDashboard` that
 * serves it on its own port (what `dray dashboard` runs).
 *
 * @example Mounted in a Hono app under /dray
 * ```ts
 * import { dashboard } from "dray/dashboard";
 * const dray = dashboard({ basePath: "/dray", token: process.env.DRAY_DASHBOARD_TOKEN });
 * app.all("/dray/*", (c) => dray.fetch(c.req.raw));
 * ```
 */
import type { Logger } from "pino";
import { RedisBroker } from "../broker/redis.ts";
import type { Broker } from "../broker/types.ts";
import { settings } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { env } from "../runtime/mod.ts";
import { serveFetch } from "../runtime/serve.ts";
import { createApp } from "./app.ts";

export interface DashboardOptions {
  /** Where the data is. @default a Redis broker on REDIS_URL and DRAY_PREFIX */
  broker?: Broker;
  /**
   * Required for pause, resume, requeue and purge, sent by the page as a bearer token; without one
   * the dashboard is read-only. Letters, digits and `._~+/-`. @default env DRAY_DASHBOARD_TOKEN
   */
  token?: string;
  /** The path the handler is mounted at ("/dray"): every link and route starts with it. @default "" */
  basePath?: string;
  logger?: Logger;
  /** A request whose Redis reads take longer gets a 503 page instead of hanging. @default 5000 */
  timeoutMs?: number;
}

export interface Dashboard {
  readonly fetch: (request: Request) => Promise<Response>;
  /** True when no token was given: every action is refused. */
  readonly readOnly: boolean;
  /** Closes the Redis connection the dashboard made (not a broker it was given). */
  close(): Promise<void>;
}

const tokenPattern = /^[A-Za-z0-9._~+/-]+=*$/;

export function dashboard(options: DashboardOptions = {}): Dashboard {
  const s = settings();
  const token = options.token ?? env("DRAY_DASHBOARD_TOKEN") ?? "";
  if (token && !tokenPattern.test(token)) {
    throw new ConfigError("the dashboard token may hold only letters, digits and . _ ~ + / - (it travels as a bearer token)");
  }
  const basePath = (options.basePath ?? "").replace(/\/+$/, "");
  if (basePath && !/^\/[A-Za-z0-9._~\/-]*$/.test(basePath)) throw new ConfigError(`basePath "${basePath}" is not a plain URL path`);
  // Its own connection pipelines what a refresh asks for at once: one round trip per refresh.
  const owned = options.broker ? undefined : new RedisBroker({ url: s.redisUrl, prefix: s.prefix, autoPipelining: true, logger: options.logger ?? s.logger });
  const broker = options.broker ?? owned!;
  const app = createApp({ broker, token: token || undefined, basePath, logger: options.logger ?? s.logger, timeoutMs: options.timeoutMs ?? 5_000 });
  return {
    fetch: async (request) => await app.fetch(request),
    readOnly: !token,
    close: async () => void (await owned?.close()),
  };
}

export interface ServeDashboardOptions extends DashboardOptions {
  /** 0 picks a free one. @default 8080 */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
}

export interface DashboardServer {
  readonly port: number;
  readonly url: string;
  readonly readOnly: boolean;
  close(): Promise<void>;
}

/**
 * Serves the dashboard on Bun, Deno or Node. Binding an address other than loopback without a token
 * is refused: anyone who reaches the port could then see every payload.
 */
export async function serveDashboard(options: ServeDashboardOptions = {}): Promise<DashboardServer> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 8080;
  const token = options.token ?? env("DRAY_DASHBOARD_TOKEN") ?? "";
  if (!token && !isLoopback(host)) {
    throw new ConfigError(`refusing to serve the dashboard on ${host} without a token: anyone who reaches it would see every payload. ` +
      "Set DRAY_DASHBOARD_TOKEN, or bind 127.0.0.1 and reach it through a tunnel or a proxy that authenticates");
  }
  const logger = options.logger ?? settings().logger;
  const handler = dashboard({ ...options, token, logger });
  try {
    const server = await serveFetch(handler.fetch, {
      port, host, onError: () => new Response("internal error", { status: 500 }),
    });
    const url = `http://${host.includes(":") ? `[${host}]` : host}:${server.port}${options.basePath ?? ""}/`;
    logger.info({ url, readOnly: handler.readOnly }, handler.readOnly ? "dashboard serving, read-only (no DRAY_DASHBOARD_TOKEN)" : "dashboard serving");
    return {
      port: server.port, url, readOnly: handler.readOnly,
      async close() {
        await server.close();
        await handler.close();
      },
    };
  } catch (error) {
    await handler.close();
    throw error;
  }
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
