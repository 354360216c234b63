/**
 * The metrics endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz` (JSON, 200 or
 * 503), over node:http, which Bun, Deno and Node all serve. The port is bound before the worker
 * reads a job, so a taken port stops the start rather than the first scrape.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { ConfigError } from "../errors.ts";
import { within } from "../timers.ts";
import type { HealthReport } from "./health.ts";

export interface MetricsServerOptions {
  /** 0 picks a free port (see {@link MetricsServer.port}). */
  port: number;
  /** @default "0.0.0.0" */
  host?: string | undefined;
  metrics(): Promise<{ contentType: string; text: string }>;
  health(): Promise<HealthReport>;
  logger: Logger;
}

export interface MetricsServer {
  /** The port it listens on. */
  readonly port: number;
  close(): Promise<void>;
}

export async function serveMetrics(options: MetricsServerOptions): Promise<MetricsServer> {
  const { port, logger } = options;
  const host = options.host ?? "0.0.0.0";
  const server = createServer((req, res) => void respond(options, req, res));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "EADDRINUSE") throw new ConfigError(`metrics port ${port} is in use`, { cause: error });
    throw new ConfigError(`metrics cannot listen on ${host}:${port}: ${(error as Error).message}`, { cause: error });
  }
  server.on("error", (error) => logger.warn({ err: error }, "metrics server error"));
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  logger.info({ host, port: bound }, "serving /metrics and /healthz");
  return {
    port: bound,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A scraper's keep-alive connection would hold close() open until it idles out.
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await within(closed, 1_000);
    },
  };
}

async function respond(o: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  try {
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain", "only GET\n");
    if (path === "/metrics") {
      const { contentType, text } = await o.metrics();
      return send(res, 200, contentType, text);
    }
    if (path === "/healthz") {
      const report = await o.health();
      return send(res, report.status === "ok" ? 200 : 503, "application/json", `${JSON.stringify(report)}\n`);
    }
    send(res, 404, "text/plain", "not found: GET /metrics or /healthz\n");
  } catch (error) {
    o.logger.warn({ err: error, path }, "metrics request failed");
    if (!res.headersSent) send(res, 500, "text/plain", "internal error\n");
    else res.end();
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
  res.end(body);
}
