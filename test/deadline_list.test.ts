import { describe, expect, test } from "bun:test";
import { DeadlineList, type Timed } from "../src/executor/deadline_list.ts";

interface Job extends Timed {
  name: string;
}

const job = (name: string): Job => ({ name, deadline: 0, limit: 0, prev: undefined, next: undefined, listed: false });

/** A list on a clock the test moves; its one timer still runs on real time, so the test waits for it. */
function harness() {
  let clock = 0;
  const expired: string[] = [];
  const list = new DeadlineList<Job>((j) => expired.push(j.name), () => clock);
  return { list, expired, advance: (ms: number) => (clock += ms) };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe("DeadlineList", () => {
  test("expires jobs of one limit in the order they started, and only those due", async () => {
    const { list, expired, advance } = harness();
    const [a, b, c] = [job("a"), job("b"), job("c")];
    list.add(a, 10);
    advance(2);
    list.add(b, 10);
    advance(2);
    list.add(c, 10);
    advance(7); // a due at 10, b at 12, c at 14; now 11
    await tick(20);
    expect(expired).toEqual(["a"]);
    advance(2);
    await tick(20);
    expect(expired).toEqual(["a", "b"]);
    list.remove(c);
    advance(100);
    await tick(20);
    expect(expired).toEqual(["a", "b"]);
  });

  test("a removed job never expires, wherever it sits in its list", async () => {
    const { list, expired, advance } = harness();
    const jobs = ["h", "m", "t"].map(job);
    for (const j of jobs) list.add(j, 5);
    list.remove(jobs[1]!);
    list.remove(jobs[0]!);
    list.remove(jobs[0]!); // twice is harmless
    advance(10);
    await tick(20);
    expect(expired).toEqual(["t"]);
  });

  test("keeps several limits apart and fires the shortest first", async () => {
    const { list, expired, advance } = harness();
    list.add(job("long"), 30);
    list.add(job("short"), 10);
    advance(20);
    await tick(20);
    expect(expired).toEqual(["short"]);
    advance(20);
    await tick(30);
    expect(expired).toEqual(["short", "long"]);
  });

  test("on the real clock: a job expires after its limit, not before", async () => {
    const expired: number[] = [];
    const started = performance.now();
    const list = new DeadlineList<Job>(() => expired.push(performance.now() - started));
    list.add(job("x"), 50);
    await tick(30);
    expect(expired).toEqual([]);
    await tick(80);
    expect(expired.length).toBe(1);
    expect(expired[0]!).toBeGreaterThanOrEqual(49);
  });
});
