import { describe, expect, it } from "vitest";
import { allBlocks, extractBlocks, RUN_ELSEWHERE, RUNNABLE, where } from "./blocks.js";

// Every code block of the READMEs runs (tests/docs/docs.engine.test.ts, scripts/registry-test.sh) or
// says why not: checked here without the engine, so a new block that does neither fails at once.

describe("the READMEs' code blocks", () => {
  const blocks = allBlocks();

  it("each runs by its language, or says what it is instead (skip with a reason, or flags of a command)", () => {
    expect(blocks.length).toBeGreaterThan(20);
    for (const block of blocks) {
      const runs = RUNNABLE.has(block.lang) && block.skip === undefined;
      expect(runs || block.skip !== undefined || block.flagsOf !== undefined, where(block)).toBe(true);
    }
  });

  it("skips few, each with its reason", () => {
    const skipped = blocks.filter((block) => block.skip !== undefined);
    expect(skipped.map((block) => `${block.file} ${block.lang || "plain"}: ${block.skip}`)).toMatchSnapshot();
    expect(skipped.length).toBeLessThanOrEqual(6);
  });

  it("runs every block that needs a registry or tarballs from scripts/registry-test.sh, as sh", () => {
    const elsewhere = blocks.filter((block) => block.needs.some((need) => RUN_ELSEWHERE.has(need)));
    expect(elsewhere.length).toBeGreaterThanOrEqual(3);
    for (const block of elsewhere) expect(block.lang, where(block)).toBe("sh");
  });
});

describe("extractBlocks", () => {
  it("reads the directives on the line before the fence", () => {
    const [a, b, c] = extractBlocks(
      "x.md",
      [
        "<!-- docs-test: needs engine; needs artifact echo -->",
        "```ts",
        "const a = 1;",
        "```",
        "<!-- docs-test: skip (a diagram) -->",
        "",
        "```mermaid",
        "graph",
        "```",
        "```sh",
        "echo hi",
        "```",
      ].join("\n"),
    );
    expect(a).toMatchObject({
      line: 2,
      lang: "ts",
      code: "const a = 1;\n",
      needs: ["engine", "artifact echo"],
    });
    expect(b).toMatchObject({ line: 7, lang: "mermaid", skip: "a diagram" });
    expect(c).toMatchObject({ line: 10, lang: "sh", needs: [] });
  });

  it("refuses a block that neither runs nor says why, an unknown directive, a skip without reason", () => {
    expect(() => extractBlocks("x.md", "```\nusage\n```\n")).toThrow(/x.md:1: a `plain` block neither runs/);
    expect(() => extractBlocks("x.md", "<!-- docs-test: needs coffee -->\n```sh\n:\n```\n")).toThrow(
      /unknown docs-test directive "needs coffee"/,
    );
    expect(() => extractBlocks("x.md", "<!-- docs-test: skip () -->\n```dot\n:\n```\n")).toThrow(
      /unknown docs-test directive/,
    );
    expect(() => extractBlocks("x.md", "```sh\necho\n")).toThrow(/never closed/);
  });
});
