import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// Every published package must be importable by tsc (types), by Node's ESM loader and by
// require.resolve (default), and testable from source without a build ("source"). What a registry
// install needs (scripts/registry-test.sh proves it against a real registry) is checked here too.
const packages = ["ociapp", "ociapp-build", "ociapp-runtime"];
const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), "utf8");
const rootManifest = JSON.parse(read("package.json"));

describe.each(packages)("packages/%s/package.json", (name) => {
  const manifest = JSON.parse(read(`packages/${name}/package.json`));

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
    expect(manifest.types).toBe(manifest.exports["."].types);
    expect(manifest.main).toBe(manifest.exports["."].default);
  });

  it("is MIT with the root's LICENSE, and names its repository folder", () => {
    expect(manifest.license).toBe("MIT");
    expect(read(`packages/${name}/LICENSE`)).toBe(read("LICENSE"));
    expect(read("LICENSE")).toMatch(/^MIT License\n/);
    expect(manifest.repository).toMatchObject({ type: "git", directory: `packages/${name}` });
    expect(manifest.repository.url).toMatch(/^git\+https:\/\/.+\.git$/);
  });

  it("ships what its source maps, declaration maps and source condition name", () => {
    // dist's maps point at ../src/*.ts: src is shipped, so stack traces and go-to-definition land
    // on files that exist (scripts/registry-test/check-installed.mjs checks every map as installed).
    expect(manifest.files).toEqual(expect.arrayContaining(["dist", "src", "LICENSE", "README.md"]));
  });

  it("depends on the SDK with a range a registry can satisfy, and declares the types its .d.ts need", () => {
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies"]) {
      for (const [dep, spec] of Object.entries((manifest[field] ?? {}) as Record<string, string>)) {
        // workspace:* would publish as the exact version; workspace:^ as ^<version>.
        if (spec.startsWith("workspace:")) expect({ dep, spec }).toEqual({ dep, spec: "workspace:^" });
        expect(spec).not.toMatch(/^(link|file):/);
      }
    }
    // node:* types in the public .d.ts: @types/node is an optional peer (TypeScript consumers have it).
    expect(manifest.peerDependencies["@types/node"]).toBe(">=20");
    expect(manifest.peerDependenciesMeta["@types/node"]).toEqual({ optional: true });
    if (name === "ociapp-runtime") {
      // DockerEngine's public type names Dockerode: its types are a dependency, pinned like dockerode's.
      expect(manifest.dependencies["@types/dockerode"]).toBe(
        rootManifest.devDependencies["@types/dockerode"],
      );
    }
  });
});
