/**
 * The dashboard served by this runtime's own HTTP server (Bun.serve, Deno.serve, or Node through
 * @hono/node-server): pages answer, what Redis holds is escaped, an action with the token lands in
 * Redis, and close() frees the port.
 */
import { Redis } from "ioredis";
import { RedisBroker } from "../../src/broker/redis.ts";
import { serveDashboard } from "../../src/dashboard/mod.ts";
import { runtime } from "../../src/runtime/mod.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "../helpers.ts";

type Check = (name: string, body: () => Promise<string | void>, timeoutMs?: number) => Promise<boolean>;

export const dashboardChecks = [`the dashboard serves its pages on ${runtime()}, escaped, and a pause with the token lands in Redis`];

export async function dashboardSmoke(check: Check): Promise<void> {
  const prefix = testPrefix("smoke-dash");
  const broker = new RedisBroker({ url: REDIS_URL, prefix, autoPipelining: true });
  const redis = new Redis(REDIS_URL);
  const token = "smoke-token-123";
  try {
    await check(dashboardChecks[0]!, async () => {
      await broker.publishActors([{ name: "a", queue: "q", priority: 0 }]);
      await broker.enqueue([{ message: { id: "x1", actor: "a", queue: "q", payload: "<script>alert(1)</script>", priority: 0, sentAt: Date.now() } }]);
      const server = await serveDashboard({ broker, port: 0, token });
      let closed = false;
      try {
        for (const path of ["", "queues/q?state=ready", "workers", "actors", "crons", "dead", "jobs?id=x1"]) {
          const res = await fetch(`${server.url}${path}`);
          const body = await res.text();
          if (res.status !== 200) throw new Error(`GET /${path}: ${res.status}`);
          if (body.includes("<script>alert")) throw new Error(`GET /${path} rendered a payload as markup`);
        }
        const res = await fetch(`${server.url}api/queues/q/pause`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
        if (res.status !== 200) throw new Error(`POST pause: ${res.status} ${await res.text()}`);
        if ((await redis.sismember(`${prefix}:paused`, "q")) !== 1) throw new Error("the pause did not reach Redis");
        const refused = await fetch(`${server.url}api/queues/q/resume`, { method: "POST" });
        if (refused.status !== 401) throw new Error(`POST without the token: ${refused.status}`);
        await refused.body?.cancel();
        await server.close();
        closed = true;
        const after = await fetch(server.url).then(() => "answered", () => "refused");
        if (after !== "refused") throw new Error("the port still answers after close()");
      } finally {
        if (!closed) await server.close();
      }
    });
  } finally {
    await broker.close();
    redis.disconnect();
    await cleanPrefix(prefix);
  }
}
