/**
 * Serving a `fetch(Request) → Response` handler on each runtime's own HTTP server: `Bun.serve`,
 * `Deno.serve`, and on Node @hono/node-server, which turns node:http's request into a Request (Node
 * has no fetch-style server of its own). Loaded only by what serves a page (the dashboard).
 */
import { ConfigError } from "../errors.ts";
import { runtime } from "./mod.ts";

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface HttpServer {
  /** The port it listens on (the one picked when 0 was asked for). */
  readonly port: number;
  /** Stops listening and ends open connections (a browser's keep-alive would hold it open). */
  close(): Promise<void>;
}

interface BunServer {
  port: number;
  stop(closeActive?: boolean): Promise<void> | void;
}
interface DenoServer {
  addr: { port: number };
  finished: Promise<void>;
  shutdown(): Promise<void>;
}
declare const Bun: { serve(o: { fetch: FetchHandler; port: number; hostname: string; idleTimeout?: number }): BunServer };
declare const Deno: {
  serve(o: { port: number; hostname: string; onListen?: () => void; onError?: (e: unknown) => Response }, fetch: FetchHandler): DenoServer;
};

/** Listens on `host:port`; a port in use or an address that cannot be bound is a ConfigError. */
export async function serveFetch(fetch: FetchHandler, o: { port: number; host: string; onError: (e: unknown) => Response }): Promise<HttpServer> {
  try {
    return await listen(fetch, o);
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error as { name?: string }).name;
    if (code === "EADDRINUSE" || code === "AddrInUse") throw new ConfigError(`port ${o.port} on ${o.host} is in use`, { cause: error });
    throw new ConfigError(`cannot listen on ${o.host}:${o.port}: ${(error as Error).message}`, { cause: error });
  }
}

async function listen(fetch: FetchHandler, o: { port: number; host: string; onError: (e: unknown) => Response }): Promise<HttpServer> {
  switch (runtime()) {
    case "bun": {
      // idleTimeout 0: a page's open event stream must not be cut after Bun's default 10 s.
      const server = Bun.serve({ fetch, port: o.port, hostname: o.host, idleTimeout: 0 });
      return { port: server.port, close: async () => void (await server.stop(true)) };
    }
    case "deno": {
      const server = Deno.serve({ port: o.port, hostname: o.host, onListen() {}, onError: o.onError }, fetch);
      return { port: server.addr.port, close: () => server.shutdown() };
    }
    default: {
      const { createAdaptorServer } = await import("@hono/node-server");
      const server = createAdaptorServer({ fetch });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(o.port, o.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      const address = server.address();
      return {
        port: typeof address === "object" && address ? address.port : o.port,
        async close() {
          const closed = new Promise<void>((resolve) => server.close(() => resolve()));
          (server as { closeAllConnections?: () => void }).closeAllConnections?.();
          await closed;
        },
      };
    }
  }
}
