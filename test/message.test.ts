/**
 * decodeMessage/encodeMessage: what a worker keeps of a message it reads. Rolling upgrades mix
 * versions, so a field only a newer sender knows must survive an older worker's retry.
 */
import { describe, expect, test } from "bun:test";
import { MalformedMessageError } from "../src/errors.ts";
import { decodeMessage, encodeMessage } from "../src/message.ts";
import { rejection } from "./helpers.ts";

const base = { id: "j-1", actor: "a", queue: "q", payload: { n: 1 }, priority: 2, sentAt: 1_700_000_000_000 };

describe("decodeMessage", () => {
  test("keeps the fields it does not know, so re-encoding writes every top-level field back", () => {
    // given a message from a newer sender, with fields this version has never heard of
    const sent = { ...base, tracked: true, future: { flag: true, list: [1, 2] }, later: "x" };
    // when it is decoded and encoded again (as a retry, dead-letter or give-back does)
    const again = JSON.parse(encodeMessage(decodeMessage(JSON.stringify(sent), "q")));
    // then nothing is lost
    expect(again).toEqual(sent);
  });

  test("normalises the known optional fields as before", () => {
    // given a message with missing or odd values in its known optional fields
    const raw = JSON.stringify({
      id: "j-2", actor: "a", sentAt: 1, payload: null, dedup: false, tracked: 0, meta: [1], cron: { name: 3 }, pipe: [],
    });
    // when it is decoded
    const m = decodeMessage(raw, "fallback");
    // then defaults fill in what is missing and the odd optional values are gone
    expect(m).toEqual({ id: "j-2", actor: "a", queue: "fallback", payload: null, priority: 0, sentAt: 1 });
    expect(Object.keys(m).sort()).toEqual(["actor", "id", "payload", "priority", "queue", "sentAt"]);
  });

  test("normalises truthy flags to true and keeps well-formed optional fields", () => {
    // given flags written as 1 and well-formed cron, meta and pipe
    const pipe = [{ id: "j-3", actor: "b", queue: "q", priority: 0 }];
    const raw = JSON.stringify({ ...base, dedup: 1, tracked: "yes", cron: { name: "c", tick: 5 }, meta: { t: 1 }, pipe });
    // when it is decoded
    const m = decodeMessage(raw, "q");
    // then the flags are booleans and the rest is as sent
    expect(m).toEqual({ ...base, dedup: true, tracked: true, cron: { name: "c", tick: 5 }, meta: { t: 1 }, pipe });
  });

  test("still refuses entries whose known fields are bad", async () => {
    // given entries that are not dray messages
    const bad: Array<[string | undefined, string]> = [
      [undefined, `no "m" field`],
      ["{nope", "not JSON"],
      ["42", "not an object"],
      ["null", "not an object"],
      [JSON.stringify({ ...base, id: "" }), "no id"],
      [JSON.stringify({ ...base, actor: 7 }), "no actor"],
      [JSON.stringify({ ...base, sentAt: "now" }), "no sentAt"],
      [JSON.stringify({ ...base, pipe: [{ id: "x" }] }), "malformed pipeline"],
    ];
    for (const [raw, why] of bad) {
      // when each is decoded, then it is a MalformedMessageError that says why
      const error = await rejection((async () => decodeMessage(raw, "q"))());
      expect(error).toBeInstanceOf(MalformedMessageError);
      expect(error.message).toContain(why);
    }
  });
});
