/** The package's entries: npm's `exports` and JSR's stay in parity, and each entry is its audience's. */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8"));

describe("package entries", () => {
  test("given package.json and deno.json, then they export the same subpaths from the same sources", () => {
    const npm: Record<string, string> = {};
    for (const [subpath, target] of Object.entries(pkg.exports as Record<string, unknown>)) {
      if (subpath === "./package.json") continue;
      const t = target as { types: string; import: string };
      // dist/src/x.js is built from src/x.ts, and its types sit beside it.
      expect(t.types).toBe(t.import.replace(/\.js$/, ".d.ts"));
      npm[subpath] = t.import.replace(/^\.\/dist\//, "./").replace(/\.js$/, ".ts");
    }
    expect(npm).toEqual(deno.exports);
    expect(pkg.version).toBe(deno.version);
    expect(deno.name).toMatch(/^@[a-z0-9-]+\/dray$/);
  });

  test("given the bin, then it is the compiled launcher, and the build copies the plain JS it needs", () => {
    expect(pkg.bin.dray).toBe("./dist/src/cli/launch.mjs");
    expect(pkg.scripts.prepack).toContain("build");
    expect(pkg.scripts.build).toContain("cp src/cli/launch.mjs");
  });

  test("given each entry, then it loads and exports its audience's names only", async () => {
    const app = await import("../src/mod.ts");
    const testing = await import("../src/testing.ts");
    const extend = await import("../src/extend.ts");
    const dashboard = await import("../src/dashboard/mod.ts");
    for (const name of ["actor", "sendTask", "cron", "getJob", "group", "pipeline", "configure", "startWorker", "closeBroker", "defaultMiddleware", "Retry", "DrayError", "TimeLimitExceeded"]) {
      expect(app).toHaveProperty(name);
    }
    for (const name of ["MemoryBroker", "RedisBroker", "Supervisor", "ThreadExecutor", "registry", "useBroker", "setBroker", "drain"]) {
      expect(app).not.toHaveProperty(name);
    }
    expect(Object.keys(testing).sort()).toEqual(["MemoryBroker", "cronStoreFor", "drain", "setBroker"]);
    expect(Object.keys(dashboard).sort()).toEqual(["dashboard", "serveDashboard"]);
    for (const name of ["RedisBroker", "MemoryBroker", "Supervisor", "ThreadExecutor", "ProcessExecutor", "InlineExecutor", "createExecutor", "retries", "rateLimiter", "cronStoreFor"]) {
      expect(extend).toHaveProperty(name);
    }
  });

  test("given an older runtime, then the check names the minimum in one line", async () => {
    const { unsupportedRuntime } = await import("../src/runtime/supported.mjs");
    expect(unsupportedRuntime({ node: "18.19.0" }, undefined)).toBe("dray needs Node >= 20, Bun, or Deno >= 2; this is Node 18.19.0");
    expect(unsupportedRuntime(undefined, "1.46.3")).toBe("dray needs Node >= 20, Bun, or Deno >= 2; this is Deno 1.46.3");
    expect(unsupportedRuntime(undefined, undefined)).toMatch(/this runtime is none of them$/);
    expect(unsupportedRuntime({ node: "20.0.0" }, undefined)).toBeUndefined();
    expect(unsupportedRuntime({ node: "24.1.0", bun: "1.4.5" }, undefined)).toBeUndefined();
    expect(unsupportedRuntime({ node: "20.11.1" }, "2.9.6")).toBeUndefined();
  });

  test("given Bun, when dray is imported and no client made, then no global is patched", () => {
    // Bun lacks TracingChannel's hasSubscribers; dray adds it for ioredis's channels only once it
    // makes a client (src/runtime/tracing.ts), not because a module imported it.
    const script = `
      import dc from "node:diagnostics_channel";
      await import(${JSON.stringify(join(root, "src/mod.ts"))});
      await import(${JSON.stringify(join(root, "src/extend.ts"))});
      const before = typeof dc.tracingChannel("ioredis:command").hasSubscribers;
      const { newRedis } = await import(${JSON.stringify(join(root, "src/broker/connection.ts"))});
      newRedis("redis://127.0.0.1:6379", { lazyConnect: true }).disconnect();
      console.log(before, typeof dc.tracingChannel("ioredis:command").hasSubscribers, typeof dc.tracingChannel("other:lib").hasSubscribers);`;
    const out = spawnSync(process.execPath, ["-e", script], { cwd: root, encoding: "utf8" });
    expect(out.stderr).toBe("");
    expect(out.stdout.trim()).toBe("undefined boolean undefined");
  });
});
