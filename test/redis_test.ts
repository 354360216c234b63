import { test } from "bun:test";
import { redisAvailable } from "./helpers.ts";

/** A bun test that needs Redis: skipped locally when Redis is absent, failed in CI (see redisAvailable). */
export function redisTest(title: string, body: () => Promise<void>, timeout = 30_000): void {
  test(title, async () => {
    if (!(await redisAvailable())) return;
    await body();
  }, timeout);
}
