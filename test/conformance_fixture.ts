/** What the broker conformance suites (broker_conformance.ts, browse_conformance.ts) run each case on. */
import { test } from "bun:test";
import type { Broker } from "../src/broker/types.ts";

export interface BrokerFixture {
  broker: Broker;
  /** Adds an entry the way a foreign program would (not through enqueue). */
  addRaw(queue: string, body: string): Promise<void>;
  /** Another worker on the same data (Redis: another consumer; memory: the same broker, whose claims differ). */
  peer(): Promise<Broker>;
  cleanup(): Promise<void>;
}

/** A test on a fresh fixture, cleaned up after; skipped (not passed) when `enabled` is false. */
export function fixtureTest(make: (visibilityTimeout: number) => Promise<BrokerFixture>, enabled: boolean) {
  return (title: string, body: (f: BrokerFixture) => Promise<void>, visibility = 10_000) =>
    test.skipIf(!enabled)(title, async () => {
      const f = await make(visibility);
      try {
        await body(f);
      } finally {
        await f.cleanup();
      }
    }, 20_000);
}
