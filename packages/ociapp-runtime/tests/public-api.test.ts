import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, expectTypeOf, it } from "vitest";
import type { KnownRuntimeError, RuntimeOptions } from "../src/index.js";
import * as api from "../src/index.js";
import { ProtocolError, Runtime } from "../src/index.js";

describe("public API", () => {
  it("has one public constructor, new Runtime(options): the test seams are not part of it", () => {
    expectTypeOf<ConstructorParameters<typeof Runtime>>().toEqualTypeOf<[options?: RuntimeOptions]>();
    expect(Runtime.length).toBe(0);
  });

  it("does not reach internal modules through the exports map", async () => {
    const internal = "ociapp-runtime/internal/create-runtime";
    await expect(import(/* @vite-ignore */ internal)).rejects.toThrow();
    expect(Object.keys(api)).not.toContain("createRuntime");
  });

  it("narrows an error by its code", () => {
    const error = new ProtocolError("unknown-id", "x") as KnownRuntimeError;
    let reason: string | undefined;
    switch (error.code) {
      case "OCIAPP_PROTOCOL":
        expectTypeOf(error).toEqualTypeOf<ProtocolError>();
        reason = error.reason;
        break;
      case "OCIAPP_WORKER_EXITED":
        expectTypeOf(error.exitCode).toEqualTypeOf<number | null>();
        break;
    }
    expect(reason).toBe("unknown-id");
    expectTypeOf(new ProtocolError("frame-timeout", "x").code).toEqualTypeOf<"OCIAPP_PROTOCOL">();
  });
});

/**
 * The bare packages a module loads when imported: its static imports and those of every module of
 * this package they reach (`import type` and `import()` load nothing at import time).
 */
function staticPackages(entry: string): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const [, kind, specifier = ""] of text.matchAll(
      /^(?:import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?"([^"]+)";?$/gms,
    )) {
      if (kind) continue;
      if (specifier.startsWith(".")) visit(resolve(dirname(file), specifier.replace(/\.js$/, ".ts")));
      else packages.add(specifier);
    }
  };
  visit(entry);
  return packages;
}

describe("what each entry point loads", () => {
  const src = fileURLToPath(new URL("../src/", import.meta.url));

  it('loads @kubernetes/client-node only from "ociapp-runtime/kubernetes", not from the main entry or the agent', () => {
    expect(staticPackages(`${src}index.ts`)).not.toContain("@kubernetes/client-node");
    expect(staticPackages(`${src}remote/agent/index.ts`)).not.toContain("@kubernetes/client-node");
    expect(staticPackages(`${src}engines/kubernetes/index.ts`)).toContain("@kubernetes/client-node");
    expect(staticPackages(`${src}index.ts`)).toContain("dockerode");
  });
});
