import { describe, expect, it } from "vitest";
import { DeadlineList } from "../src/pool/deadline-list.js";

describe("DeadlineList", () => {
  it("expires items in deadline order and reports the first one still owed", () => {
    const list = new DeadlineList<string>();
    list.push("a", 10);
    list.push("b", 20);
    list.push("c", 30);
    expect(list.nextDue()).toBe(10);
    expect(list.takeOverdue(5, () => true)).toBeUndefined();
    expect(list.takeOverdue(25, (item) => item === "b")).toBe("b");
    expect(list.size).toBe(1);
    expect(list.nextDue()).toBe(30);
    expect(list.takeOverdue(30, () => false)).toBeUndefined();
    expect(list.size).toBe(0);
    expect(list.nextDue()).toBeUndefined();
  });

  it("does not grow with history", () => {
    const list = new DeadlineList<number>();
    for (let i = 0; i < 10_000; i++) {
      list.push(i, i);
      list.takeOverdue(i - 5, () => false);
    }
    expect(list.size).toBeLessThanOrEqual(6);
    expect((list as unknown as { items: unknown[] }).items.length).toBeLessThan(3_000);
  });
});
