import { test } from "bun:test";
import { redisAvailable } from "./helpers.ts";

/**
 * Whether Redis answers, decided once before any test is registered, so that bun reports the tests
 * that need it as skipped rather than passed. In CI a missing Redis throws here (see redisAvailable)
 * and fails the file that imports this.
 */
export const hasRedis = await redisAvailable();

/** A bun test that needs Redis: skipped locally when Redis is absent, failed in CI. */
export function redisTest(title: string, body: () => Promise<void>, timeout = 30_000): void {
  test.skipIf(!hasRedis)(title, body, timeout);
}
