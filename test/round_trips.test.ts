/**
 * How many round trips the dashboard's refreshes cost, counted on the wire: a TCP proxy between an
 * autoPipelining RedisBroker and Redis sees every byte either way. A round trip is a burst of
 * requests the client sends after a reply reached it (or first): a command that needs an earlier
 * reply can only be sent after that reply, so it always starts a new one, and no count here can
 * come out lower than the truth. The proxy holds each reply for LATENCY ms, as a network would:
 * commands issued together all reach it long before the first reply goes back, so they are not
 * split into two by the order in which the proxy happens to see their bytes and Redis's reply.
 */
import { afterEach, beforeEach, describe, expect } from "bun:test";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { RedisBroker } from "../src/broker/redis.ts";
import { throughput } from "../src/history/read.ts";
import type { Message } from "../src/message.ts";
import { liveOverview } from "../src/operations.ts";
import { cleanPrefix, REDIS_URL, testPrefix } from "./helpers.ts";
import { hasRedis, redisTest } from "./redis_test.ts";

const LATENCY = 25;

/** Counts round trips per connection (summed), and which commands each one carried. */
class RoundTripProxy {
  /** One list per round trip: the commands sent in it, as "NAME first-key". */
  trips: string[][] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(target: URL): Promise<RoundTripProxy> {
    const server = createServer();
    const proxy = new RoundTripProxy(server);
    server.on("connection", (client) => proxy.#relay(client, Number(target.port || 6379), target.hostname));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    const address = this.#server.address();
    if (!address || typeof address === "string") throw new Error("the proxy is not listening");
    return `redis://127.0.0.1:${address.port}`;
  }

  /** The round trips `work` takes, the connection being idle before it. */
  async measure(work: () => Promise<unknown>): Promise<string[][]> {
    this.trips = [];
    await work();
    return this.trips;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #relay(client: Socket, port: number, host: string): void {
    const redis = tcpConnect(port, host);
    this.#sockets.add(client).add(redis);
    let answered = true;
    let trip: string[] = [];
    let pending = "";
    client.on("data", (chunk: Buffer) => {
      if (answered) this.trips.push((trip = []));
      answered = false;
      pending += chunk.toString("latin1");
      const { commands, rest } = parseCommands(pending);
      trip.push(...commands);
      pending = rest;
      redis.write(chunk);
    });
    // Chunks go back in the order they came, each LATENCY ms after it came.
    const held: Buffer[] = [];
    redis.on("data", (chunk: Buffer) => {
      held.push(chunk);
      setTimeout(() => {
        answered = true;
        client.write(held.shift()!);
      }, LATENCY);
    });
    const end = () => {
      client.destroy();
      redis.destroy();
    };
    for (const socket of [client, redis]) socket.on("close", end).on("error", end);
  }
}

/** The whole commands (RESP arrays of bulk strings) at the start of `text`, each as "NAME first-key". */
function parseCommands(text: string): { commands: string[]; rest: string } {
  const commands: string[] = [];
  let at = 0;
  for (;;) {
    const args = parseArray(text, at);
    if (!args) return { commands, rest: text.slice(at) };
    at = args.end;
    const [name = "", ...rest] = args.values;
    const scripted = /^eval(sha)?$/i.test(name);
    commands.push(`${name.toUpperCase()} ${(scripted ? rest[2] : rest[0]) ?? ""}`.trim());
  }
}

function parseArray(text: string, start: number): { values: string[]; end: number } | undefined {
  const line = (from: number) => {
    const eol = text.indexOf("\r\n", from);
    return eol < 0 ? undefined : { value: text.slice(from + 1, eol), next: eol + 2 };
  };
  const head = text[start] === "*" ? line(start) : undefined;
  if (!head) return undefined;
  const values: string[] = [];
  let at = head.next;
  for (let i = 0; i < Number(head.value); i++) {
    const size = line(at);
    if (!size) return undefined;
    const end = size.next + Number(size.value);
    if (text.length < end + 2) return undefined;
    values.push(text.slice(size.next, end));
    at = end + 2;
  }
  return { values, end: at };
}

let seq = 0;
function msg(queue: string, over: Partial<Message> = {}): Message {
  return { id: `rt${seq++}`, actor: "a", queue, payload: seq, priority: 0, sentAt: Date.now(), ...over };
}

const QUEUES = ["q1", "q2", "q3", "q4", "q5"];

describe.skipIf(!hasRedis)("round trips of the dashboard's reads, counted by a proxy", () => {
  let prefix: string;
  let proxy: RoundTripProxy;
  let setup: RedisBroker;
  let broker: RedisBroker;

  beforeEach(async () => {
    // given jobs ready, running on two levels (one tracked), delayed and dead in five queues, a
    // minute of history, and a broker that reaches Redis through the proxy
    prefix = testPrefix("rtt");
    setup = new RedisBroker({ url: REDIS_URL, prefix });
    await setup.publishActors(QUEUES.map((queue) => ({ name: `a-${queue}`, queue, priority: 0 })));
    await setup.enqueue([
      msg("q1", { tracked: true }), msg("q1", { priority: 5 }), msg("q1"), msg("q1", { priority: 5 }), msg("q2"),
    ].map((message) => ({ message })));
    await setup.read(["q1"], 3, 0);
    await setup.enqueue([{ message: msg("q3"), delay: 60_000 }, { message: msg("q4") }]);
    for (const d of await setup.read(["q4"], 1, 0)) if (!("malformed" in d)) await setup.deadLetter(d, { name: "E", message: "e" });
    await setup.control.pause("q5");
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    await setup.history.add(["q1", "q2"].map((queue) => ({
      resolution: "minute" as const, at: minute, queue, actor: `a-${queue}`, counts: { started: 2, completed: 2 },
    })));
    proxy = await RoundTripProxy.start(new URL(REDIS_URL));
    broker = new RedisBroker({ url: proxy.url, prefix, autoPipelining: true });
  });

  afterEach(async () => {
    await broker.close();
    await setup.close();
    await proxy.close();
    await cleanPrefix(prefix);
  });

  redisTest("the proxy counts a command sent after a reply as a second round trip", async () => {
    await broker.queues();
    // when two commands go one after the other, and two together
    const apart = await proxy.measure(async () => {
      await broker.queues();
      await broker.control.paused();
    });
    const together = await proxy.measure(() => Promise.all([broker.queues(), broker.control.paused()]));
    // then those are two round trips, these one
    expect(apart).toHaveLength(2);
    expect(together).toHaveLength(1);
    expect(together[0]).toHaveLength(2);
  });

  redisTest("statsMany of five queues is one round trip", async () => {
    await broker.statsMany(QUEUES); // loads the script on this connection
    const trips = await proxy.measure(() => broker.statsMany(QUEUES));
    expect(trips).toEqual([QUEUES.map(() => expect.stringMatching(/^EVALSHA /))]);
  });

  redisTest("a page of running jobs is one round trip, whatever the page holds", async () => {
    await broker.browse("q1", "running");
    let page: Awaited<ReturnType<RedisBroker["browse"]>> | undefined;
    const trips = await proxy.measure(async () => (page = await broker.browse("q1", "running", { limit: 2 })));
    expect(trips).toEqual([[expect.stringMatching(/^EVALSHA /)]]);
    expect(page!.items.map((i) => i.state)).toEqual(["running", "running"]);
    expect(page!.next).toBeDefined();
  });

  redisTest("the overview's refresh (queues with counts, and jobs per minute) is one round trip", async () => {
    const overview = liveOverview(broker);
    const to = Date.now();
    const refresh = () => Promise.all([overview(), throughput(broker.history, { from: to - 59 * 60_000, to })]);
    await refresh(); // learns the queue names, loads the script
    let result: Awaited<ReturnType<typeof refresh>> | undefined;
    const trips = await proxy.measure(async () => (result = await refresh()));
    expect(trips).toHaveLength(1);
    const [queues, points] = result!;
    expect(queues.map((q) => [q.queue, q.ready, q.running, q.delayed, q.dead, q.paused])).toEqual([
      ["q1", 1, 3, 0, 0, false], ["q2", 1, 0, 0, 0, false], ["q3", 0, 0, 1, 0, false], ["q4", 0, 0, 0, 1, false],
      ["q5", 0, 0, 0, 0, true],
    ]);
    expect(points.reduce((n, p) => n + p.completed, 0)).toBe(4);
  });

  redisTest("jobs per minute: an actor new since the last read costs one more round trip, once", async () => {
    const to = Date.now();
    const perMinute = () => throughput(broker.history, { from: to - 59 * 60_000, to });
    await perMinute();
    // given an actor that did something since the last read
    await setup.history.add([{ resolution: "minute", at: to, queue: "q3", actor: "a-q3", counts: { completed: 5 } }]);
    // when read again, and again
    let points: Awaited<ReturnType<typeof perMinute>> = [];
    const first = await proxy.measure(async () => (points = await perMinute()));
    const second = await proxy.measure(perMinute);
    // then its counts come in a second round trip, and the next read needs none
    expect(first).toEqual([expect.any(Array), [expect.stringMatching(/^HGETALL .*q3\|a-q3$/)]]);
    expect(points.reduce((n, p) => n + p.completed, 0)).toBe(9);
    expect(second).toHaveLength(1);
  });

  redisTest("a queue page's refresh (the overview and a page of running jobs) is one round trip", async () => {
    const overview = liveOverview(broker);
    const refresh = () => Promise.all([overview(), broker.browse("q1", "running")]);
    await refresh();
    const trips = await proxy.measure(refresh);
    expect(trips).toHaveLength(1);
  });
});
