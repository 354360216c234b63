/**
 * The producer: jobs with ids of its own (`send(payload, { jobId })`, dray's public API) at a steady
 * rate while the faults go on, and what became of each send. A send that rejected (or never settled)
 * is uncertain: during a Redis restart the job may or may not have been written.
 */
import { nowMs } from "../scenarios.ts";
import { ACTOR_OF, chaosActors, type ChaosPayload, type JobKind } from "./app.ts";
import type { Rng } from "./faults.ts";
import type { Send } from "./history.ts";

export interface ProducerOptions {
  /** Jobs per second. */
  rate: number;
  durationMs: number;
  rng: Rng;
  /** How long to wait for sends still in flight at the end before calling them pending. @default 15_000 */
  settleMs?: number;
}

/** The mix: mostly plain jobs; busy loops rare, each costs two thread kills and ~0.7 s of a core. */
const mix: Record<JobKind, number> = { plain: 0.52, flaky: 0.2, limited: 0.25, busy: 0.03 };

export function payloadFor(kind: JobKind, rng: Rng): ChaosPayload {
  switch (kind) {
    case "plain":
      return { ms: rng.int(10, 300) };
    case "flaky":
      return { ms: rng.int(10, 100), fails: rng.int(1, 3) };
    case "limited":
      return { ms: rng.int(50, 300) };
    case "busy":
      return { ms: 0 };
  }
}

export async function produce(o: ProducerOptions): Promise<Send[]> {
  const sends: Send[] = [];
  const inFlight = new Set<Promise<void>>();
  const start = Date.now();
  for (let n = 0; Date.now() - start < o.durationMs; n++) {
    const kind = o.rng.weighted(mix);
    const id = `${kind}-${String(n).padStart(6, "0")}`;
    const send: Send = { id, actor: ACTOR_OF[kind], t: nowMs(), outcome: "pending" };
    sends.push(send);
    const p = chaosActors[kind].send(payloadFor(kind, o.rng), { jobId: id }).then((handle) => {
      send.outcome = "resolved";
      // A duplicate on a fresh id: the client re-sent a send whose first reply was lost.
      if (handle.duplicate) send.duplicate = true;
    }, (error: unknown) => {
      send.outcome = "rejected";
      send.error = String((error as Error)?.message ?? error).slice(0, 200);
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    // Steady: the next send is due at its own time, however long this one takes.
    const due = start + ((n + 1) * 1000) / o.rate;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
  }
  await Promise.race([Promise.all(inFlight), new Promise((r) => setTimeout(r, o.settleMs ?? 15_000))]);
  return sends;
}
