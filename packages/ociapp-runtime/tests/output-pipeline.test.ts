import { describe, expect, it } from "vitest";
import { OutputPipeline, type OutputStream } from "../src/engines/output.js";

describe("OutputPipeline", () => {
  it("splits chunks into lines across chunk boundaries, per stream", () => {
    const output = new OutputPipeline();
    output.push("stdout", Buffer.from("hel"));
    output.push("stderr", Buffer.from("err one\nerr "));
    output.push("stdout", Buffer.from("lo\nworld\r\n"));
    output.push("stderr", Buffer.from("two"));
    output.end();
    expect(output.text()).toBe("err one\nhello\nworld\nerr two");
    expect(output.lineCount).toBe(4);
  });

  it("keeps the last maxLines lines of each stream of a flood, merged in arrival order", () => {
    const output = new OutputPipeline({ maxLines: 3 });
    const line = `${"x".repeat(1023)}\n`;
    output.push("stdout", Buffer.from(line.repeat(256)));
    output.push("stderr", Buffer.from(line.repeat(256)));
    output.push("stderr", Buffer.from("the last line\n"));
    expect(output.text().split("\n")).toEqual([
      ...Array(3).fill("x".repeat(1023)),
      "x".repeat(1023),
      "x".repeat(1023),
      "the last line",
    ]);
    expect(output.lineCount).toBe(513);
  });

  it("keeps a stream's last line when the other stream's output arrives after it (the engine copies them apart)", () => {
    const output = new OutputPipeline({ maxLines: 2 });
    output.push("stderr", Buffer.from("Error: the reason it died\n"));
    output.push("stdout", Buffer.from("late stdout\n".repeat(1000)));
    expect(output.text()).toBe("Error: the reason it died\nlate stdout\nlate stdout");
  });

  it("hands every line to onLine in order when a sink is set", () => {
    const seen: [OutputStream, string][] = [];
    const output = new OutputPipeline({ maxLines: 2, onLine: (stream, text) => seen.push([stream, text]) });
    output.push("stdout", Buffer.from("a\nb\nc\n"));
    output.push("stderr", Buffer.from("d"));
    output.end();
    expect(seen).toEqual([
      ["stdout", "a"],
      ["stdout", "b"],
      ["stdout", "c"],
      ["stderr", "d"],
    ]);
    // The last two lines of each stream: b and c of stdout, d of stderr.
    expect(output.text()).toBe("b\nc\nd");
  });

  it("cuts a line past maxLineBytes, even one that never ends, and holds bounded memory", () => {
    const output = new OutputPipeline({ maxLines: 2, maxLineBytes: 8 });
    for (let i = 0; i < 10_000; i++) output.push("stdout", Buffer.alloc(1024, 0x61));
    output.push("stdout", Buffer.from("\nshort\n"));
    expect(output.text()).toBe(`${"a".repeat(8)}…\nshort`);
    expect(output.byteCount).toBe(10_000 * 1024 + 7);
  });

  it("takes nothing after end()", () => {
    const output = new OutputPipeline();
    output.push("stdout", Buffer.from("one\n"));
    output.end();
    output.push("stdout", Buffer.from("two\n"));
    expect(output.text()).toBe("one");
  });
});
