import { describe, expect, it } from "vitest";
import { Call, CallDeadlines, CallQueue } from "../src/pool/call.js";

function call(id: string): Call {
  const created = new Call(
    id,
    Buffer.alloc(0),
    () => undefined,
    () => undefined,
    undefined,
    60_000,
  );
  created.succeed(null); // clears its timer; the queue only cares about links
  return created;
}

describe("CallQueue", () => {
  it("is FIFO with O(1) removal from anywhere", () => {
    const queue = new CallQueue();
    const calls = ["a", "b", "c", "d"].map(call);
    for (const c of calls) queue.push(c);
    queue.remove(calls[1] as Call);
    queue.remove(calls[3] as Call);
    queue.remove(calls[3] as Call);
    expect(queue.length).toBe(2);
    expect(queue.drain().map((c) => c.id)).toEqual(["a", "c"]);
    expect(queue.length).toBe(0);
    expect(queue.shift()).toBeUndefined();
  });
});

describe("CallDeadlines", () => {
  function timed(deadlines: CallDeadlines, timeoutMs: number, outcomes: string[], id: string): Call {
    return new Call(
      id,
      Buffer.alloc(0),
      () => outcomes.push(`${id}:answered`),
      (error) => outcomes.push(`${id}:${(error as Error).name}`),
      undefined,
      timeoutMs,
      deadlines,
    );
  }

  it("times calls out in order with one timer, and forgets settled calls at once", async () => {
    const deadlines = new CallDeadlines();
    const outcomes: string[] = [];
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
    const before = timers();
    const calls = Array.from({ length: 1_000 }, (_, i) => timed(deadlines, 50, outcomes, String(i)));
    // One timer for a thousand calls (before: one each).
    expect(timers() - before).toBeLessThanOrEqual(1);
    for (const settled of calls.slice(0, 500)) settled.succeed(null);
    expect(deadlines.size).toBe(500);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(outcomes.filter((outcome) => outcome.endsWith(":RequestTimeoutError"))).toHaveLength(500);
    expect(outcomes.filter((outcome) => outcome.endsWith(":answered"))).toHaveLength(500);
    expect(outcomes.at(-1)).toBe("999:RequestTimeoutError");
    expect(deadlines.size).toBe(0);
  });
});
