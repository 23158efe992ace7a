import { describe, expect, it } from "vitest";
import { CallAborts } from "../../src/remote/agent/call-aborts.js";

describe("CallAborts", () => {
  it("hands a controller back out only when it was never aborted and nobody listens to it", () => {
    const aborts = new CallAborts(2);
    const quiet = aborts.take();
    aborts.give(quiet);
    expect(aborts.take()).toBe(quiet);

    const aborted = aborts.take();
    aborted.abort(new Error("reset"));
    aborts.give(aborted);
    expect(aborts.take()).not.toBe(aborted);

    const heard = aborts.take();
    heard.signal.addEventListener("abort", () => undefined);
    aborts.give(heard);
    expect(aborts.take()).not.toBe(heard);

    // At most `max` are kept.
    const kept = [aborts.take(), aborts.take(), aborts.take()];
    for (const controller of kept) aborts.give(controller);
    const again = new Set([aborts.take(), aborts.take(), aborts.take()]);
    expect(kept.filter((controller) => again.has(controller))).toHaveLength(2);
    for (const controller of again) expect(controller.signal.aborted).toBe(false);
  });
});
