import { printable, printableJson, printableLines, quote } from "ociapp/artifact";
import { describe, expect, it } from "vitest";

// Every character class an artifact could use to drive a terminal, one of each and the bounds.
const UNSAFE = [
  ["\u0000", "\\u0000"],
  ["\t", "\\u0009"],
  ["\n", "\\u000a"],
  ["\r", "\\u000d"],
  ["\u001b", "\\u001b"],
  ["\u001f", "\\u001f"],
  ["\u007f", "\\u007f"],
  ["\u0080", "\\u0080"],
  ["\u009b", "\\u009b"],
  ["\u009f", "\\u009f"],
  ["\u2028", "\\u2028"],
  ["\u2029", "\\u2029"],
  ["\u202a", "\\u202a"],
  ["\u202e", "\\u202e"],
  ["\u2066", "\\u2066"],
  ["\u2069", "\\u2069"],
] as const;

describe("printable", () => {
  it("escapes C0, DEL, C1, line separators and bidi controls as \\uXXXX", () => {
    for (const [raw, shown] of UNSAFE) expect(printable(`a${raw}b`)).toBe(`a${shown}b`);
  });

  it("leaves everything else alone: text, backslashes, accents, emoji, other format characters", () => {
    const text = 'name@1.0.0 "x" \\u001b é 日本 😀 \u00a0 \u200d \u2030 ~';
    expect(printable(text)).toBe(text);
  });

  it("printableLines keeps \\n and \\t and escapes the rest, \\r included", () => {
    expect(printableLines("a\tb\nc\rd\u001b[2J\u202e")).toBe("a\tb\nc\\u000dd\\u001b[2J\\u202e");
  });

  it("quote quotes, escapes and cuts long values without splitting a surrogate pair", () => {
    expect(quote("a\nb")).toBe('"a\\u000ab"');
    expect(quote("x".repeat(300))).toBe(`"${"x".repeat(77)}..."`);
    expect(quote(`${"x".repeat(76)}😀yyyy`)).toBe(`"${"x".repeat(76)}..."`);
  });

  it("printableJson is one line with no raw control, and parses back to the same value", () => {
    const value = { s: UNSAFE.map(([raw]) => raw).join(""), n: 1, list: ["\u009b", "é"] };
    const json = printableJson(value);
    expect(json).not.toMatch(
      // biome-ignore lint/suspicious/noControlCharactersInRegex: what the output must not carry
      /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/,
    );
    expect(JSON.parse(json)).toEqual(value);
    // JSON.stringify alone lets them through.
    expect(JSON.stringify(value)).toContain("\u009b");
  });
});
