import { describe, expect, it } from "vitest";
import { ReceiveBudget } from "../src/protocol/receive-budget.js";

describe("ReceiveBudget", () => {
  it("lets everyone read within the budget", () => {
    const budget = new ReceiveBudget(100);
    const [a, b] = [{}, {}];
    expect(budget.update(a, 40, () => undefined)).toBe(true);
    expect(budget.update(b, 60, () => undefined)).toBe(true);
    expect(budget.held).toBe(100);
  });

  it("past the budget, the first one over reads on until its frame is complete; the others wait, then resume", () => {
    const budget = new ReceiveBudget(100);
    const [a, b, c] = [{}, {}, {}];
    const resumed: string[] = [];
    expect(budget.update(a, 60, () => resumed.push("a"))).toBe(true);
    expect(budget.update(b, 60, () => resumed.push("b"))).toBe(true); // b went over: b reads on
    expect(budget.update(c, 10, () => resumed.push("c"))).toBe(false);
    expect(budget.update(a, 70, () => resumed.push("a"))).toBe(false);
    expect(budget.update(b, 90, () => resumed.push("b"))).toBe(true);
    expect(budget.paused).toBe(2);
    // b's frame completes: 80 held, within the budget: everyone resumes.
    expect(budget.update(b, 0, () => resumed.push("b"))).toBe(true);
    expect(resumed.sort()).toEqual(["a", "c"]);
    expect(budget.peak).toBe(170);
  });

  it("never leaves everyone paused: past the budget with no reader, the longest waiter gets the turn", () => {
    const budget = new ReceiveBudget(100);
    const [a, b, c] = [{}, {}, {}];
    const resumed: string[] = [];
    budget.update(a, 90, () => resumed.push("a"));
    expect(budget.update(b, 50, () => resumed.push("b"))).toBe(true); // b's turn
    expect(budget.update(c, 50, () => resumed.push("c"))).toBe(false);
    // b's connection ends (a violation, say) with 140 still held by a and c: c gets the turn.
    budget.release(b);
    expect(budget.held).toBe(140);
    expect(resumed).toEqual(["c"]);
    expect(budget.update(c, 60, () => resumed.push("c"))).toBe(true);
    expect(budget.update(a, 95, () => resumed.push("a"))).toBe(false);
  });
});
