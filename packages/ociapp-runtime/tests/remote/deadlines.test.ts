import { afterEach, describe, expect, it, vi } from "vitest";
import { Deadlines } from "../../src/remote/deadlines.js";

describe("Deadlines", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("expires entries of one duration in order, at their own deadline, and never a cancelled one", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const a = deadlines.add(100, () => expired.push("a"));
    vi.advanceTimersByTime(30);
    const b = deadlines.add(100, () => expired.push("b"));
    deadlines.add(100, () => expired.push("c"));
    deadlines.cancel(a);
    deadlines.cancel(a); // a second cancel is a no-op
    // The timer armed for a's deadline fires early for b: b is not due yet and waits.
    vi.advanceTimersByTime(99);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(2);
    expect(expired).toEqual(["b", "c"]);
    deadlines.cancel(b); // after expiry: a no-op
    expect(vi.getTimerCount()).toBe(0);
  });

  it("keeps a list per duration, and an entry added while others expire gets its full time", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const deadlines = new Deadlines();
    const expired: string[] = [];
    deadlines.add(50, () => {
      expired.push("short");
      deadlines.add(50, () => expired.push("again"));
    });
    deadlines.add(20, () => expired.push("shorter"));
    vi.advanceTimersByTime(21);
    expect(expired).toEqual(["shorter"]);
    vi.advanceTimersByTime(30);
    expect(expired).toEqual(["shorter", "short"]);
    vi.advanceTimersByTime(48);
    expect(expired).toEqual(["shorter", "short"]);
    vi.advanceTimersByTime(2);
    expect(expired).toEqual(["shorter", "short", "again"]);
  });

  it("leaves its timer armed but unref'd once every entry is cancelled (nothing kept alive)", () => {
    const deadlines = new Deadlines();
    const entry = deadlines.add(60_000, () => undefined);
    const timer = (deadlines as unknown as { lists: Map<number, { timer: NodeJS.Timeout }> }).lists.get(
      60_000,
    )?.timer as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(true);
    deadlines.cancel(entry);
    expect(timer.hasRef()).toBe(false);
    const next = deadlines.add(60_000, () => undefined);
    expect(timer.hasRef()).toBe(true);
    deadlines.cancel(next);
    clearTimeout(timer);
  });

  it("waits out a deadline longer than Node's largest timer (2^31 - 1 ms) without waking every millisecond", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const deadlines = new Deadlines();
    const expired: string[] = [];
    deadlines.add(3e9, () => expired.push("long"));
    const start = performance.now();
    // One timer at the bound (a larger delay would fire after 1 ms), armed again for what is left.
    vi.advanceTimersToNextTimer();
    expect(performance.now() - start).toBe(2 ** 31 - 1);
    expect(expired).toEqual([]);
    vi.advanceTimersToNextTimer();
    expect(performance.now() - start).toBe(3e9);
    expect(expired).toEqual(["long"]);
  });

  it("goes on expiring after an expire() that throws: the entries left and those added later", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const deadlines = new Deadlines();
    const expired: string[] = [];
    deadlines.add(50, () => {
      throw new Error("boom");
    });
    vi.advanceTimersByTime(10);
    deadlines.add(50, () => expired.push("second"));
    expect(() => vi.advanceTimersByTime(41)).toThrow("boom");
    vi.advanceTimersByTime(10);
    expect(expired).toEqual(["second"]);
    deadlines.add(50, () => expired.push("later"));
    vi.advanceTimersByTime(51);
    expect(expired).toEqual(["second", "later"]);
  });
});
