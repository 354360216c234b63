/**
 * A slot moved from one master of a local Redis Cluster to another, key by key, the way `redis-cli
 * --cluster reshard` moves it (CLUSTER SETSLOT IMPORTING on the target, MIGRATING on the source,
 * MIGRATE ... KEYS in batches, then SETSLOT NODE on every master), but slowly on purpose: pauses
 * between the batches keep the slot half-moved for a while, so that a test sees the ASK and TRYAGAIN
 * replies of that window for as long as it needs to, rather than by luck.
 */
import type { Redis } from "ioredis";
import { Redis as Client } from "ioredis";
import { HOST } from "./topology.ts";
import type { MasterNode } from "./cluster.ts";

export interface SlotMove {
  slot: number;
  from: MasterNode;
  to: MasterNode;
  /** Every master: each is told the slot's new owner, as redis-cli does. */
  masters: readonly MasterNode[];
  /** Keys per MIGRATE. @default 10 */
  batch?: number;
  /** How long the keys take to move, at least: the pause between batches is spread over it. @default 1500 */
  spreadMs?: number;
  /** Called once the slot is MIGRATING/IMPORTING, before any key moves. */
  onOpen?: () => void;
}

export interface SlotMoved {
  keys: number;
  batches: number;
  /** From MIGRATING until every master named the new owner. */
  ms: number;
}

/** Moves `move.slot` from `move.from` to `move.to`; see {@link SlotMove}. */
export async function migrateSlot(move: SlotMove): Promise<SlotMoved> {
  const batch = move.batch ?? 10;
  const clients = new Map(move.masters.map((m) => [m.port, node(m.port)]));
  const source = clients.get(move.from.port)!;
  const target = clients.get(move.to.port)!;
  const began = performance.now();
  try {
    // Importing first, as redis-cli does: a client the source sends to the target with ASK is then served there.
    await target.call("CLUSTER", "SETSLOT", move.slot, "IMPORTING", move.from.id);
    await source.call("CLUSTER", "SETSLOT", move.slot, "MIGRATING", move.to.id);
    move.onOpen?.();
    const spreadMs = move.spreadMs ?? 1500;
    let keys = 0;
    let batches = 0;
    const total = Math.ceil(Number(await source.call("CLUSTER", "COUNTKEYSINSLOT", move.slot)) / batch);
    const pause = Math.max(5, Math.round(spreadMs / Math.max(1, total)));
    for (;;) {
      const next = (await source.call("CLUSTER", "GETKEYSINSLOT", move.slot, batch)) as string[];
      if (next.length === 0) break;
      await source.call("MIGRATE", HOST, move.to.port, "", 0, 5000, "KEYS", ...next);
      keys += next.length;
      batches++;
      await sleep(pause);
    }
    // The target first: once the source lets go, it must already know the slot is its own.
    for (const m of [move.to, move.from, ...move.masters.filter((m) => m.port !== move.to.port && m.port !== move.from.port)]) {
      await clients.get(m.port)!.call("CLUSTER", "SETSLOT", move.slot, "NODE", move.to.id);
    }
    return { keys, batches, ms: Math.round(performance.now() - began) };
  } finally {
    for (const c of clients.values()) c.disconnect();
  }
}

function node(port: number): Redis {
  const redis = new Client({ host: HOST, port, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => undefined);
  return redis;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
