/**
 * The chaos run's own redis-server: a free local port, AOF with `appendfsync always` and no RDB, in a
 * directory of its own. Faults (kill -9, CLIENT KILL) never touch a Redis that others use, and a
 * restart on the same port and directory loses nothing Redis acknowledged.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { Redis } from "ioredis";
import { dieWithParent } from "../../src/runtime/parent_death.mjs";
import { trackChild } from "./live.ts";

export function redisServerAvailable(): boolean {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
}

/** A port nothing listens on right now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

export class RedisServer {
  readonly url: string;
  #child: ChildProcess | undefined;
  #exited: Promise<unknown> = Promise.resolve();

  constructor(readonly port: number, readonly dir: string) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts (or restarts) the server on the same port and directory; resolves once it answers PING. */
  async start(timeoutMs = 15_000): Promise<void> {
    const [cmd, ...pre] = [...dieWithParent(), "redis-server"];
    const child = spawn(cmd!, [...pre, "--port", String(this.port), "--bind", "127.0.0.1",
      "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", this.dir,
      "--logfile", join(this.dir, "redis.log")], { stdio: "ignore" });
    this.#child = child;
    trackChild(child);
    this.#exited = new Promise((resolve) => child.once("exit", resolve));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited:\n${this.logTail()}`);
      // A server still loading its AOF answers LOADING: not up yet.
      if (await answers(this.url)) return;
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer within ${timeoutMs} ms:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The fault: SIGKILL, no shutdown, no final fsync beyond what `appendfsync always` already did. */
  async kill9(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGKILL");
    await this.#exited;
  }

  /** Teardown: the same SIGKILL; the harness removes the directory. */
  async stop(): Promise<void> {
    await this.kill9();
    this.#child = undefined;
  }

  logTail(): string {
    try {
      return readFileSync(join(this.dir, "redis.log"), "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "(no redis.log)";
    }
  }
}

async function answers(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
