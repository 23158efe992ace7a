import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// Every published package must be importable by tsc (types), by Node's ESM loader and by
// require.resolve (default), and testable from source without a build ("source").
const packages = ["ociapp", "ociapp-build", "ociapp-runtime"];

describe.each(packages)("packages/%s/package.json", (name) => {
  const manifest = JSON.parse(
    readFileSync(new URL(`../packages/${name}/package.json`, import.meta.url), "utf8"),
  );

  it("is an ESM package for Node >= 20", () => {
    expect(manifest.name).toBe(name);
    expect(manifest.type).toBe("module");
    expect(manifest.engines.node).toMatch(/^>=20/);
  });

  it("has an exports map with types first and source and default conditions", () => {
    const entries = Object.entries(manifest.exports as Record<string, unknown>).filter(
      ([key]) => key !== "./package.json",
    );
    expect(entries.length).toBeGreaterThan(0);
    for (const [, target] of entries) {
      const conditions = Object.keys(target as Record<string, string>);
      expect(conditions[0]).toBe("types");
      expect(conditions).toContain("source");
      expect(conditions.at(-1)).toBe("default");
    }
  });
});
