/**
 * `dray <command>` as a person meets it: `--help` on every command prints that command's usage, a
 * bad flag names the command and points to its help, and logs are pretty or JSON as asked.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { cleanPrefix, fixture, REDIS_URL, root, runtimeCommand, spawnDray, testPrefix, until } from "./helpers.ts";
import { redisTest } from "./redis_test.ts";

const commands = ["worker", "scheduler", "cron", "dlq", "queues", "workers", "bench"];

/** Runs `dray <args>` to its end, with `env` on top of this process's (less any DRAY_LOG_FORMAT). */
function dray(args: string[], env: Record<string, string> = {}) {
  const [cmd, ...pre] = runtimeCommand();
  const { DRAY_LOG_FORMAT: _, ...base } = process.env;
  const out = spawnSync(cmd!, [...pre, join(root, "src/cli/main.ts"), ...args], {
    cwd: root, encoding: "utf8", env: { ...base, ...env }, timeout: 30_000,
  });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

describe("dray <command> --help", () => {
  test.each(commands)("given %s --help or -h, then it prints its own usage and exits 0", (command) => {
    for (const flag of ["--help", "-h"]) {
      const r = dray([command, flag]);
      expect(r.status).toBe(0);
      expect(r.stdout).toStartWith(`usage: dray ${command}`);
      expect(r.stdout).toContain("-h, --help");
      expect(r.stderr).toBe("");
    }
  });

  test("given the chaos scenario, when help is asked, then it prints the chaos run's own flags", () => {
    const r = dray(["bench", "--scenario", "chaos", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toStartWith("usage: dray bench --scenario chaos");
    expect(r.stdout).toContain("--faults");
    expect(r.stdout).not.toContain("--latency-seconds");
  });

  test("given another mistake on the same line, when help is asked, then help wins", () => {
    const r = dray(["worker", "--foo", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toStartWith("usage: dray worker");
  });

  test("given no command, when run, then the short list points to each command's help", () => {
    const r = dray([]);
    expect(r.status).toBe(0);
    for (const command of commands) expect(r.stdout).toContain(`  ${command}`);
    expect(r.stdout).toContain("dray <command> --help");
  });
});

describe("bad usage", () => {
  test.each(commands)("given %s --foo, then it exits 2 with one line naming the command, and the hint", (command) => {
    const r = dray([command, "--foo"]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trimEnd().split("\n")).toEqual([
      `dray ${command}: unknown option '--foo'`,
      `run 'dray ${command} --help' for its options`,
    ]);
  });

  test("given a flag without its value or out of range, then the message names the flag", () => {
    const missing = dray(["worker", "app.ts", "--threads"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toStartWith("dray worker: option '--threads' needs a value\n");
    const zero = dray(["worker", "app.ts", "--threads", "0"]);
    expect(zero.status).toBe(2);
    expect(zero.stderr).toStartWith('dray worker: --threads must be a positive integer, not "0"\n');
    expect(zero.stderr).toContain("dray worker --help");
  });

  test("given a DRAY_LOG_FORMAT that is neither pretty nor json, then the command refuses to start", () => {
    const r = dray(["scheduler", fixture("cron_app.ts")], { DRAY_LOG_FORMAT: "yaml", REDIS_URL });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('DRAY_LOG_FORMAT must be pretty or json, not "yaml"');
  });
});

describe("log format", () => {
  let prefix = "";
  afterEach(async () => {
    if (prefix) await cleanPrefix(prefix);
    prefix = "";
  });

  /** Runs `dray scheduler` until it says it started, stops it, and returns its stdout lines. */
  async function schedulerLines(format: string): Promise<string[]> {
    prefix = testPrefix("logfmt");
    const p = spawnDray("scheduler", [fixture("cron_app.ts")],
      { DRAY_PREFIX: prefix, REDIS_URL, DRAY_LOG_FORMAT: format, DRAY_LOG_LEVEL: "info", NO_COLOR: "1" });
    await until(() => p.output().includes("scheduler started") || p.child.exitCode !== null, "scheduler started", 20_000);
    expect(await p.stop("SIGTERM")).toBe(0);
    return p.output().split("\n").filter((l) => l.trim() !== "");
  }

  const isJson = (line: string): boolean => {
    try {
      return typeof JSON.parse(line) === "object";
    } catch {
      return false;
    }
  };

  redisTest("given DRAY_LOG_FORMAT=pretty, when the scheduler logs, then its lines are for a person, not JSON", async () => {
    const lines = await schedulerLines("pretty");
    expect(lines.some((l) => /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(dray\): scheduler started/.test(l))).toBe(true);
    expect(lines.some((l) => l.includes("scheduler stopping"))).toBe(true);
    expect(lines.filter(isJson)).toEqual([]);
  });

  redisTest("given DRAY_LOG_FORMAT=json, when the scheduler logs, then every line is a JSON object", async () => {
    const lines = await schedulerLines("json");
    expect(lines.every(isJson)).toBe(true);
    expect(lines.map((l) => JSON.parse(l).msg)).toContain("scheduler started");
  });

  test("given pino-pretty cannot be loaded, when pretty is asked, then it logs JSON after one warning", () => {
    const script = `
      import { createLogger } from ${JSON.stringify(join(root, "src/logger.ts"))};
      const logger = createLogger("pretty", () => { throw new Error("Cannot find module 'pino-pretty'\\nRequire stack: ..."); });
      logger.info("still logging");`;
    const out = spawnSync(process.execPath, ["-e", script], { cwd: root, encoding: "utf8" });
    expect(out.status).toBe(0);
    const lines = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, "pretty logs need the pino-pretty package, which could not be loaded; logging JSON"],
      [30, "still logging"],
    ]);
    expect(lines[0].reason).toBe("Cannot find module 'pino-pretty'");
  });
});
