/**
 * Tests that need Redis say so when it is absent: skipped locally (never passed without running),
 * failed in CI. Runs one test file of the suite in a child `bun test` pointed at a port where
 * nothing listens.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { root } from "./helpers.ts";

const bun = process.env.BUN_BIN ?? process.execPath;

function runWithoutRedis(ci: boolean): { code: number | null; out: string } {
  const env: Record<string, string | undefined> = { ...process.env, REDIS_URL: "redis://127.0.0.1:1", CI: ci ? "true" : undefined };
  if (!ci) delete env.CI;
  const r = spawnSync(bun, ["test", join(root, "test/dlq_cli.test.ts")], { cwd: root, env, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test("given no Redis outside CI, when a file of Redis tests runs, then its tests are reported skipped, not passed", () => {
  const { code, out } = runWithoutRedis(false);
  expect(out).toMatch(/^\s*3 skip$/m);
  expect(out).toMatch(/^\s*0 pass$/m);
  expect(code).toBe(0);
}, 60_000);

test("given no Redis in CI, when a file of Redis tests runs, then it fails", () => {
  const { code, out } = runWithoutRedis(true);
  expect(code).not.toBe(0);
  expect(out).toContain("CI needs it");
}, 60_000);
