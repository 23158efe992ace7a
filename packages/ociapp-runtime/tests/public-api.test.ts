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
