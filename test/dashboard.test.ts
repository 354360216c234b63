/**
 * The dashboard's handler over a real Redis, without a browser (test/browser/ clicks through it in
 * Chromium): what Redis holds is rendered as text, bad input is a 4xx, actions need the token, and
 * Redis away is a 503 rather than a hang.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { RedisBroker } from "../src/broker/redis.ts";
import { configure } from "../src/config.ts";
import { dashboard, serveDashboard, type Dashboard } from "../src/dashboard/mod.ts";
import type { Delivery, Message } from "../src/message.ts";
import { freePort } from "../bench/chaos/redis_server.ts";
import { cleanPrefix, REDIS_URL, rejection, testPrefix } from "./helpers.ts";
import { redisTest as it } from "./redis_test.ts";

const token = "s3cret-dashboard-token";
const logger = pino({ level: "silent" });
const xssPayload = { note: "<script>window.__xss=1</script>", img: "<img src=x onerror=alert(1)>" };
const xssError = { name: "Error", message: `<img src=x onerror="window.__xss=1">`, stack: "Error: <script>alert(2)</script>\n    at handler (app.ts:1:1)" };

let prefix = "";
let redis: Redis;
let broker: RedisBroker;
let dash: Dashboard;
let readOnly: Dashboard;

const get = async (d: Dashboard, path: string) => {
  const res = await d.fetch(new Request(`http://dash${path}`));
  return { status: res.status, headers: res.headers, body: await res.text() };
};
const post = async (d: Dashboard, path: string, form: Record<string, string | string[]>, auth?: string) => {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const one of [v].flat()) body.append(k, one);
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (auth !== undefined) headers.authorization = `Bearer ${auth}`;
  const res = await d.fetch(new Request(`http://dash${path}`, { method: "POST", headers, body }));
  return { status: res.status, json: (await res.json()) as { message?: string; error?: string } };
};

let seq = 0;
const message = (over: Partial<Message> = {}): Message =>
  ({ id: `job-${seq++}`, actor: "a", queue: "q", payload: { n: seq }, priority: 0, sentAt: Date.now(), ...over });

/** Sends `messages`, reads them and dead-letters each with `error`; returns the letter ids, newest first. */
async function dead(messages: Message[], error = xssError): Promise<string[]> {
  await broker.enqueue(messages.map((m) => ({ message: m })));
  const read = (await broker.read(["q"], messages.length, 0)) as Delivery[];
  for (const d of read) await broker.deadLetter(d, error);
  return (await redis.xrevrange(`{${prefix}:q}:dlq`, "+", "-")).map(([id]) => id);
}

beforeEach(async () => {
  prefix = testPrefix("dash");
  configure({ prefix, redisUrl: REDIS_URL });
  redis = new Redis(REDIS_URL);
  broker = new RedisBroker({ url: REDIS_URL, prefix, autoPipelining: true });
  await broker.publishActors([{ name: "a", queue: "q", priority: 0 }]);
  dash = dashboard({ broker, token, logger });
  readOnly = dashboard({ broker, token: "", logger });
});

afterEach(async () => {
  await broker.close();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe("dashboard", () => {
  it("given payloads and errors holding markup, when each page renders them, then they are text", async () => {
    await dead([message({ id: "dead-xss", payload: xssPayload })]);
    await broker.enqueue([{ message: message({ id: "ready-xss", payload: xssPayload }) }]);
    for (const path of ["/queues/q?state=ready", "/dead/q", "/jobs?id=dead-xss&queue=q", "/jobs?id=ready-xss"]) {
      const { status, body } = await get(dash, path);
      expect(status).toBe(200);
      expect(body).not.toContain("<script>window");
      expect(body).not.toContain("<img src=x");
      expect(body).toContain("&lt;script&gt;");
    }
    const job = (await get(dash, "/jobs?id=dead-xss&queue=q")).body;
    expect(job).toContain("&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;");
    expect(job).toContain("at handler (app.ts:1:1)");
  });

  it("given any page, then it carries a Content-Security-Policy that allows no inline script", async () => {
    const { headers } = await get(dash, "/");
    const csp = headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(headers.get("x-frame-options")).toBe("SAMEORIGIN");
  });

  it("given bad input, then each answer is a 4xx page saying why, never a 500", async () => {
    const cases: Array<[string, number]> = [
      [`/jobs?id=${"x".repeat(201)}`, 400],
      ["/jobs?id=", 400],
      ["/jobs?id=nobody", 404],
      ["/queues/bad%20name", 400],
      ["/queues/unknown", 404],
      ["/queues/q?state=bogus", 400],
      ["/queues/q?state=ready&cursor=garbage", 400],
      [`/queues/q?state=ready&cursor=${"9".repeat(2000)}`, 400],
      ["/dead/q?cursor=%00%01", 400],
      ["/actors?window=week", 400],
      ["/crons/nope", 404],
      ["/nothing/here", 404],
    ];
    for (const [path, want] of cases) {
      const { status, body } = await get(dash, path);
      expect(`${path} ${status}`).toBe(`${path} ${want}`);
      expect(body).toContain('class="problem"');
      expect(body).not.toMatch(/at \w+ \(|node_modules/);
    }
  });

  it("given a huge payload, when its job page renders, then the payload is cut and says so", async () => {
    await broker.enqueue([{ message: message({ id: "huge", payload: { blob: "y".repeat(300_000) } }) }]);
    const { status, body } = await get(dash, "/jobs?id=huge&queue=q");
    expect(status).toBe(200);
    expect(body).toMatch(/cut at 16384 of 3000\d\d characters/);
    expect(body.length).toBeLessThan(60_000);
  });

  it("given an undecodable entry, when its queue lists, then it shows as raw text", async () => {
    await redis.xadd(`{${prefix}:q}:stream:0`, "*", "m", "<b>not json</b>");
    await redis.sadd(`{${prefix}:q}:priorities`, "0");
    const { status, body } = await get(dash, "/queues/q?state=ready");
    expect(status).toBe(200);
    expect(body).toContain("undecodable");
    expect(body).toContain("&lt;b&gt;not json&lt;/b&gt;");
  });

  it("given the token, when pause and resume are posted, then Redis changes; without it or with a wrong one, nothing does", async () => {
    expect((await post(dash, "/api/queues/q/pause", {})).status).toBe(401);
    expect((await post(dash, "/api/queues/q/pause", {}, "wrong-token")).status).toBe(401);
    expect((await post(readOnly, "/api/queues/q/pause", {}, token)).status).toBe(403);
    expect(await redis.sismember(`${prefix}:paused`, "q")).toBe(0);
    expect(await post(dash, "/api/queues/q/pause", {}, token)).toEqual({ status: 200, json: { message: "Paused q." } });
    expect(await redis.sismember(`${prefix}:paused`, "q")).toBe(1);
    expect((await get(dash, "/queues/q")).body).toContain('id="queue-state">paused');
    expect((await post(dash, "/api/queues/q/resume", {}, token)).status).toBe(200);
    expect(await redis.sismember(`${prefix}:paused`, "q")).toBe(0);
  });

  it("given dead letters, when one is requeued, two purged by selection and the rest purged all, then the dlq follows", async () => {
    const ids = await dead([0, 1, 2, 3, 4].map(() => message()));
    const dlq = `{${prefix}:q}:dlq`;
    expect((await post(readOnly, "/api/dead/q/purge", { all: "1" }, token)).status).toBe(403);
    expect((await post(dash, "/api/dead/q/requeue", { ids: ids[0]! }, token)).json.message).toBe("Requeued 1 dead letter of q.");
    expect((await broker.stats("q")).ready).toBe(1);
    expect((await post(dash, "/api/dead/q/purge", { ids: [ids[1]!, ids[2]!] }, token)).json.message).toBe("Purged 2 dead letters of q.");
    expect((await redis.xrange(dlq, "-", "+")).map(([id]) => id).sort()).toEqual([ids[3]!, ids[4]!].sort());
    expect((await post(dash, "/api/dead/q/purge", {}, token)).status).toBe(400);
    expect((await post(dash, "/api/dead/q/purge", { ids: "not-an-id" }, token)).status).toBe(400);
    expect((await post(dash, "/api/dead/q/purge", { all: "1" }, token)).json.message).toBe("Purged 2 dead letters of q.");
    expect(await redis.xlen(dlq)).toBe(0);
  });

  it("given a page of dead letters, when next is followed, then every letter shows once", async () => {
    await dead(Array.from({ length: 60 }, () => message()));
    const first = (await get(dash, "/dead/q")).body;
    const next = /id="next-page" href="|href="([^"]+)" id="next-page"/.exec(first)?.[1];
    expect(next).toBeDefined();
    const second = (await get(dash, next!.replaceAll("&amp;", "&"))).body;
    const rows = (html: string) => [...html.matchAll(/data-letter="([^"]+)"/g)].map((m) => m[1]);
    const all = [...rows(first), ...rows(second)];
    expect(all.length).toBe(60);
    expect(new Set(all).size).toBe(60);
  });

  it("given the server, when bound beyond loopback without a token, then it refuses at start", async () => {
    const error = await rejection(serveDashboard({ broker, host: "0.0.0.0", port: 0, token: "", logger }));
    expect(String(error.message)).toMatch(/refusing to serve the dashboard on 0\.0\.0\.0 without a token/);
    expect(() => dashboard({ broker, token: "has spaces" })).toThrow(/token may hold only/);
    const server = await serveDashboard({ broker, port: 0, token, logger });
    try {
      const res = await fetch(server.url);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("<table id=\"queues\">");
    } finally {
      await server.close();
    }
  });

  it("given Redis away, when a page is asked for, then it answers 503 within the time limit", async () => {
    const port = await freePort();
    const away = new RedisBroker({ url: `redis://127.0.0.1:${port}`, prefix });
    const d = dashboard({ broker: away, timeoutMs: 1_500, logger });
    try {
      const started = Date.now();
      const { status, body } = await get(d, "/");
      expect(status).toBe(503);
      expect(body).toContain("Redis");
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await away.close().catch(() => undefined);
    }
  });
});
