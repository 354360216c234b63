/**
 * dray as deployments run it: as a Redis ACL user limited to one prefix, and over TLS with a private
 * CA. Each part starts a redis-server of its own on a free port (the TLS one with a CA and certificate
 * made here with openssl) and tears it down after. Skipped without redis-server or openssl, except in
 * CI, which has both.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, redisServerAvailable } from "../bench/chaos/redis_server.ts";
import { closeBroker } from "../src/client.ts";
import { configure } from "../src/config.ts";
import { BrokerError, JobAborted } from "../src/errors.ts";
import { dieWithParent } from "../src/runtime/mod.ts";
import { startWorker } from "../src/worker.ts";
import { doomed, echo, flaky, keyOf, waiter } from "./fixtures/acl_app.ts";
import { fixture, REDIS_URL, rejection, spawnDray, spawnWorker, started, testPrefix, until, type WorkerProcess } from "./helpers.ts";

const hasTools = redisServerAvailable() && spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0;
if (!hasTools && process.env.CI) throw new Error("redis-server and openssl are missing; CI needs them");
const it = test.skipIf(!hasTools);

const app = fixture("acl_app.ts");
const dirs: string[] = [];
const servers: ChildProcess[] = [];
const workers: WorkerProcess[] = [];

/**
 * The rule the README gives for a user that runs dray on prefix `p` and nothing else. Beyond
 * `+@all -@dangerous`: INFO (ioredis's ready check) and CLIENT UNBLOCK (a worker wakes its own
 * blocked read); `~` is the empty key name, which dray's scripts take as "no such key" in place of an
 * optional one. Taken away, because they reach past the prefix and dray needs none of them: SCAN and
 * RANDOMKEY list every key name, PUBSUB every channel name, FUNCTION and SCRIPT FLUSH change what
 * every user runs.
 */
const aclRule = (p: string): string[] => [
  `~${p}:*`, `~{${p}:*`, "resetchannels", `&${p}:*`, `&{${p}:*`,
  "+@all", "-@dangerous", "+info", "+client|unblock", "-scan", "-randomkey", "-pubsub", "-function", "-script|flush",
];

function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dray-${label}-`));
  dirs.push(dir);
  return dir;
}

/** A redis-server of this file's own, on 127.0.0.1, no persistence; resolves once it accepts connections. */
async function redisServer(dir: string, args: string[]): Promise<void> {
  const log = join(dir, "redis.log");
  const [cmd, ...pre] = [...dieWithParent(), "redis-server"];
  const child = spawn(cmd!, [...pre, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
    "--logfile", log, ...args], { stdio: "ignore" });
  servers.push(child);
  const text = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
  await until(() => child.exitCode !== null || text().includes("Ready to accept connections"), "redis-server ready", 10_000);
  if (child.exitCode !== null) throw new Error(`redis-server exited:\n${text()}`);
}

function openssl(dir: string, ...args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}:\n${r.stderr}`);
}

/** A CA, and a certificate it signed for 127.0.0.1 and localhost: what a private deployment has. */
function certificates(dir: string): { ca: string; cert: string; key: string } {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(dir, "req", "-x509", "-new", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=dray test CA");
  openssl(dir, "req", "-new", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(join(dir, "san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(dir, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.pem", "-days", "1", "-extfile", "san.cnf");
  return { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

async function cli(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; output: string }> {
  const p = spawnDray(args[0]!, args.slice(1), env);
  const code = await p.exited;
  return { code, output: p.output() };
}

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop("SIGKILL")));
  // Other files in this process set their own redisUrl and prefix, but none sets tls.
  configure({ redisUrl: REDIS_URL, tls: undefined });
  await closeBroker();
});

afterAll(() => {
  for (const s of servers) s.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("a Redis user limited to one prefix", () => {
  let port = 0;
  let admin: Redis;
  const adminUrl = () => `redis://admin:admin-pw@127.0.0.1:${port}`;

  beforeAll(async () => {
    if (!hasTools) return;
    port = await freePort();
    // Nobody gets in without a password: the default user is off, the test's own is `admin`.
    await redisServer(tempDir("acl"), ["--port", String(port), "--user", "default", "off",
      "--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"]);
    admin = new Redis(adminUrl());
  });

  afterAll(() => admin?.disconnect());

  /** A user for `prefix` with the README's rule; its URL. */
  async function userFor(prefix: string): Promise<string> {
    await admin.call("ACL", "SETUSER", prefix, "reset", "on", ">pw", ...aclRule(prefix));
    return `redis://${prefix}:pw@127.0.0.1:${port}`;
  }

  /** What the ACL refused this user, newest first. */
  async function refused(user: string): Promise<Array<Record<string, string>>> {
    const log = (await admin.call("ACL", "LOG")) as unknown[][];
    return log.map((e) => Object.fromEntries(Array.from({ length: e.length / 2 }, (_, i) => [e[2 * i], String(e[2 * i + 1])])))
      .filter((e) => e.username === user);
  }

  it("worker, sender and CLI all work: results, retries, dead letters, abort, cron, metrics", async () => {
    // given a user for this prefix, a worker and a sender that connect as it
    const prefix = testPrefix("acl");
    const url = await userFor(prefix);
    const env = { REDIS_URL: url, DRAY_PREFIX: prefix };
    const metricsPort = await freePort();
    const w = spawnWorker([app], ["--concurrency", "4", "--threads", "2", "--metrics-port", String(metricsPort)], env);
    workers.push(w);
    await started(w);
    configure({ redisUrl: url, prefix });
    // when jobs run that complete, retry, die and get aborted while running
    const ok = await echo.send({ v: "hi" });
    const retried = await flaky.send(undefined);
    const dead = await doomed.send(undefined);
    const held = await waiter.send(undefined);
    // then each ends as it should, and the sender reads each outcome
    expect(await ok.result({ timeout: 10_000 })).toEqual({ v: "hi", runs: 1 });
    expect(await retried.result({ timeout: 10_000 })).toBe(2);
    expect((await rejection(dead.result({ timeout: 10_000 }))).message).toBe("doomed");
    const sender = new Redis(url);
    await until(() => sender.exists(keyOf(`started:${held.id}`)), "the waiting job started");
    expect(await held.abort()).toMatchObject({ aborted: true });
    expect(await rejection(held.result({ timeout: 10_000 }))).toBeInstanceOf(JobAborted);
    // and the worker's cron ticker ticks
    await until(async () => Number(await sender.get(keyOf("ticks"))) > 0, "a cron tick ran", 5_000);
    sender.disconnect();
    // and the CLI reads and steers as the same user
    const queues = await cli(env, "queues");
    expect(queues.code).toBe(0);
    expect(queues.output).toMatch(/acl\s+\d+\s+\d+\s+\d+\s+1\s+no/);
    const dlq = await cli(env, "dlq", "list", "--json");
    expect(dlq.code).toBe(0);
    expect(dlq.output).toContain(dead.id);
    const live = await cli(env, "workers", "--json");
    expect(live.code).toBe(0);
    expect(JSON.parse(live.output)).toMatchObject([{ pid: w.child.pid }]);
    expect((await cli(env, "queues", "pause", "acl")).output).toContain('paused "acl"');
    expect((await cli(env, "queues", "resume", "acl")).output).toContain('resumed "acl"');
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("acl_echo");
    // and Redis refused this user nothing along the way (dray swallows some errors: the log does not)
    expect(await refused(prefix)).toEqual([]);
  }, 45_000);

  it("is refused every key outside its prefix; a worker on another prefix says which key, in one line", async () => {
    // given a user for this prefix
    const prefix = testPrefix("acl");
    const url = await userFor(prefix);
    const r = new Redis(url);
    // when it writes outside its prefix, then Redis refuses
    expect(String(await rejection(r.set("other:x", "1")))).toContain("NOPERM");
    expect(String(await rejection(r.set(`${prefix}x`, "1")))).toContain("NOPERM");
    r.disconnect();
    // when a worker starts as this user on another prefix
    const other = testPrefix("other");
    const w = spawnWorker([app], ["--concurrency", "2", "--threads", "1"], { REDIS_URL: url, DRAY_PREFIX: other });
    workers.push(w);
    // then it prints one line that names the refused key, and never reports itself started
    await until(() => w.output().includes("NOPERM"), "the NOPERM line", 15_000);
    const line = w.output().split("\n").find((l) => l.includes("NOPERM"))!;
    expect(line).toStartWith("dray worker: redis: NOPERM");
    expect(line).toContain(`"${other}:actors"`);
    expect(w.logs.some((l) => l.msg === "worker started")).toBe(false);
    // and it exits on its own, non-zero, instead of lingering half-started
    const code = await Promise.race([w.exited, new Promise<"running">((r) => setTimeout(() => r("running"), 10_000))]);
    expect(code).not.toBe("running");
    expect(code).not.toBe(0);
  }, 30_000);
});

describe("TLS with a private CA", () => {
  let port = 0;
  let ca = "";
  const url = () => `rediss://127.0.0.1:${port}`;

  beforeAll(async () => {
    if (!hasTools) return;
    const dir = tempDir("tls");
    const files = certificates(dir);
    ca = files.ca;
    port = await freePort();
    await redisServer(dir, ["--port", "0", "--tls-port", String(port), "--tls-cert-file", files.cert,
      "--tls-key-file", files.key, "--tls-ca-cert-file", files.ca, "--tls-auth-clients", "no"]);
  });

  it("a worker given the CA by DRAY_REDIS_CA, a sender by configure({ tls }): jobs run, results read", async () => {
    // given a worker process that trusts the CA through the environment, and a sender through configure
    const prefix = testPrefix("tls");
    const env = { REDIS_URL: url(), DRAY_PREFIX: prefix, DRAY_REDIS_CA: ca };
    const w = spawnWorker([app], ["--concurrency", "4", "--threads", "1"], env);
    workers.push(w);
    await started(w);
    configure({ redisUrl: url(), prefix, tls: { ca: readFileSync(ca) } });
    // when jobs are sent, one of which retries
    const ok = await echo.send({ v: "over tls" });
    const retried = await flaky.send(undefined);
    // then both complete and the sender reads their results (over its own TLS pub/sub connection)
    expect(await ok.result({ timeout: 10_000 })).toEqual({ v: "over tls", runs: 1 });
    expect(await retried.result({ timeout: 10_000 })).toBe(2);
    // and the CLI reads over TLS with the same variable
    const queues = await cli(env, "queues");
    expect(queues.code).toBe(0);
    expect(queues.output).toContain("acl");
  }, 30_000);

  it("a CA given only to configure() reaches handlers' ctx.redis in pool threads and child processes", async () => {
    for (const isolation of ["thread", "process"] as const) {
      // given a worker started in code, whose CA is in its settings only (no DRAY_REDIS_CA anywhere)
      const prefix = testPrefix("tls");
      configure({ redisUrl: url(), prefix, tls: { ca: readFileSync(ca) } });
      const worker = await startWorker({
        modules: [app], queues: ["acl"], isolation, concurrency: 2, threads: 1, handleSignals: false, cron: false,
      });
      try {
        // when a job's handler uses ctx.redis, its own client in the thread or child
        const job = await echo.send({ v: isolation });
        // then it connects over TLS and the job completes
        expect(await job.result({ timeout: 10_000 })).toEqual({ v: isolation, runs: 1 });
      } finally {
        await worker.stop();
      }
    }
  }, 30_000);

  it("without the CA, the certificate error is named: CLI and sender fail with it, a worker logs it", async () => {
    // given no CA anywhere
    const prefix = testPrefix("tls");
    const env = { REDIS_URL: url(), DRAY_PREFIX: prefix };
    const refusal = `the TLS certificate of redis at 127.0.0.1:${port} is not trusted`;
    // when the CLI runs, then it fails at once with one line that says what to do
    const queues = await cli(env, "queues");
    expect(queues.code).toBe(2);
    expect(queues.output.trim().split("\n")).toEqual([expect.stringContaining(`dray queues: ${refusal}`)]);
    expect(queues.output).toContain("DRAY_REDIS_CA");
    // when a sender sends, then the send rejects with the same error, not with a retry count
    configure({ redisUrl: url(), prefix, tls: undefined });
    const error = await rejection(echo.send({ v: "x" }));
    expect(error).toBeInstanceOf(BrokerError);
    expect(error.message).toContain(refusal);
    // when a worker starts, then it logs the error (and keeps trying, as it does while Redis is away)
    const w = spawnWorker([app], ["--concurrency", "2", "--threads", "1"], env);
    workers.push(w);
    await until(() => w.logs.some((l) => l.level === 50 && String(l.msg).includes(refusal)), "the worker's TLS error", 15_000);
    // and a CA file that cannot be read is named before anything connects
    const missing = await cli({ ...env, DRAY_REDIS_CA: join(tmpdir(), "no-such-ca.pem") }, "queues");
    expect(missing.code).toBe(2);
    expect(missing.output).toContain(`DRAY_REDIS_CA: cannot read "${join(tmpdir(), "no-such-ca.pem")}"`);
  }, 30_000);
});
