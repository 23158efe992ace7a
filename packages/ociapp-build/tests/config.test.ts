import { runtimeDefaultsAnnotations } from "ociapp/artifact";
import { describe, expect, it } from "vitest";
import { ConfigIssue, parseOciappConfig, splitEntrypoint } from "../src/config.js";

const issue = (value: unknown): string => {
  try {
    parseOciappConfig(value);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigIssue);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigIssue");
};

describe("parseOciappConfig", () => {
  it("defaults to managed mode with no system packages", () => {
    expect(parseOciappConfig({ entrypoint: "dist/main.js#app" })).toEqual({
      mode: "managed",
      entrypoint: "dist/main.js#app",
      systemPackages: [],
    });
  });

  it("accepts the full managed form", () => {
    expect(
      parseOciappConfig({
        mode: "managed",
        entrypoint: "dist/main.js#echo",
        systemPackages: ["jq", "libvips42=8.14.1-3+deb12u1"],
        baseImage: "registry.example.com/node:20-bookworm-slim@sha256:abc",
      }),
    ).toEqual({
      mode: "managed",
      entrypoint: "dist/main.js#echo",
      systemPackages: ["jq", "libvips42=8.14.1-3+deb12u1"],
      baseImage: "registry.example.com/node:20-bookworm-slim@sha256:abc",
    });
  });

  it("accepts custom mode", () => {
    expect(parseOciappConfig({ mode: "custom", containerfile: "Containerfile.custom" })).toEqual({
      mode: "custom",
      containerfile: "Containerfile.custom",
    });
  });

  it("takes the app's runtime defaults, bounded, and records them as dev.ociapp.runtime.* annotations", () => {
    const config = parseOciappConfig({
      entrypoint: "dist/main.js#app",
      runtime: { maxConcurrency: 4, memory: 268_435_456, nanoCpus: 500_000_000 },
    });
    expect(config.runtime).toEqual({ maxConcurrency: 4, memory: 268_435_456, nanoCpus: 500_000_000 });
    expect(runtimeDefaultsAnnotations(config.runtime ?? {})).toEqual({
      "dev.ociapp.runtime.maxConcurrency": "4",
      "dev.ociapp.runtime.memory": "268435456",
      "dev.ociapp.runtime.nanoCpus": "500000000",
    });
    expect(() => parseOciappConfig({ entrypoint: "a.js", runtime: { maxConcurrency: 0 } })).toThrow(
      "ociapp.runtime.maxConcurrency: number 0 is invalid: Too small: expected number to be >=1",
    );
    expect(() => parseOciappConfig({ entrypoint: "a.js", runtime: { env: { A: "1" } } })).toThrow(
      'ociapp.runtime: unknown key "env"',
    );
  });

  it("names unknown keys", () => {
    expect(issue({ entrypoint: "dist/main.js", systemPackage: ["jq"] })).toBe(
      'ociapp: unknown key "systemPackage"',
    );
    expect(issue({ mode: "custom", containerfile: "C", entrypoints: "x", extra: 1 })).toBe(
      'ociapp: unknown keys "entrypoints", "extra"',
    );
    // managed-only keys are unknown in custom mode
    expect(issue({ mode: "custom", containerfile: "C", systemPackages: [] })).toBe(
      'ociapp: unknown key "systemPackages"',
    );
  });

  it("names the key and the value of a wrong type", () => {
    expect(issue({ entrypoint: "dist/main.js", systemPackages: "jq" })).toBe(
      'ociapp.systemPackages: expected array, got "jq"',
    );
    expect(issue({ entrypoint: "dist/main.js", systemPackages: ["jq", 7] })).toBe(
      "ociapp.systemPackages[1]: expected string, got number 7",
    );
    expect(issue({ entrypoint: 12 })).toBe("ociapp.entrypoint: expected string, got number 12");
    expect(issue({})).toBe("ociapp.entrypoint: required (string)");
    expect(issue({ mode: "custom" })).toBe("ociapp.containerfile: required (string)");
    expect(issue("dist/main.js")).toBe('ociapp: expected an object, got "dist/main.js"');
    expect(issue(["x"])).toBe("ociapp: expected an object, got an array");
  });

  it("rejects values that would reach a shell or escape the project", () => {
    expect(issue({ entrypoint: "dist/main.js", systemPackages: ["jq; rm -rf /"] })).toMatch(
      /^ociapp\.systemPackages\[0\]: "jq; rm -rf \/" is invalid: not a Debian package name$/,
    );
    expect(issue({ entrypoint: "dist/main.js", baseImage: "node:20 AS x" })).toMatch(
      /^ociapp\.baseImage: .*image reference/,
    );
    expect(issue({ entrypoint: "../outside.js#app" })).toMatch(/^ociapp\.entrypoint: .*inside the project/);
    expect(issue({ entrypoint: "/abs/main.js" })).toMatch(/^ociapp\.entrypoint: .*inside the project/);
    expect(issue({ entrypoint: "main.js#not-an-identifier" })).toMatch(
      /^ociapp\.entrypoint: .*<module>#<export>/,
    );
    expect(issue({ mode: "custom", containerfile: "../Containerfile" })).toMatch(
      /^ociapp\.containerfile: .*inside/,
    );
    expect(issue({ mode: "remote", entrypoint: "x" })).toBe(
      'ociapp.mode: expected "managed" or "custom", got "remote"',
    );
  });

  it("refuses control characters in paths and shows every value escaped", () => {
    // The entrypoint becomes an annotation that `inspect` shows, the containerfile a buildx argument.
    expect(issue({ entrypoint: "dist/main.js\u001b[2J#app" })).toBe(
      'ociapp.entrypoint: "dist/main.js\\u001b[2J#app" is invalid: control characters are not allowed',
    );
    expect(issue({ entrypoint: "main\u202e.js" })).toBe(
      'ociapp.entrypoint: "main\\u202e.js" is invalid: control characters are not allowed',
    );
    expect(issue({ mode: "custom", containerfile: "Containerfile\n.x" })).toBe(
      'ociapp.containerfile: "Containerfile\\u000a.x" is invalid: control characters are not allowed',
    );
    expect(issue({ entrypoint: "x.js", "\u001b]0;owned\u0007": 1 })).toBe(
      'ociapp: unknown key "\\u001b]0;owned\\u0007"',
    );
    expect(issue({ entrypoint: "x.js", systemPackages: ["jq\n\u009b"] })).toBe(
      'ociapp.systemPackages[0]: "jq\\u000a\\u009b" is invalid: not a Debian package name',
    );
  });
});

it("splitEntrypoint defaults the export to app", () => {
  expect(splitEntrypoint("dist/main.js")).toEqual({ module: "dist/main.js", exportName: "app" });
  expect(splitEntrypoint("dist/main.js#echo")).toEqual({ module: "dist/main.js", exportName: "echo" });
});
