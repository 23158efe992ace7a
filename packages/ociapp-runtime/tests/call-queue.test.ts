import { describe, expect, it } from "vitest";
import { Call, CallQueue } from "../src/call.js";

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
