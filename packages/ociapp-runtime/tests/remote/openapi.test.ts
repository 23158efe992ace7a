import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ROUTES } from "../../src/remote/http/wire.js";

// openapi.yaml describes the surface the agent serves: the same routes, and every error code.

const SPEC = parse(readFileSync(fileURLToPath(new URL("../../openapi.yaml", import.meta.url)), "utf8")) as {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components: { responses: { Error: { description: string } } };
};

describe("openapi.yaml", () => {
  it("is OpenAPI 3.1 and lists the agent's routes", () => {
    expect(SPEC.openapi).toBe("3.1.0");
    expect(Object.keys(SPEC.paths).sort()).toEqual(
      [
        ROUTES.healthz,
        ROUTES.metrics,
        ROUTES.status,
        "/v1/artifacts/{digest}",
        ...["execute", "warm", "pull", "drain"].map((action) => `/v1/artifacts/{digest}/${action}`),
      ].sort(),
    );
  });

  it("names every error code the agent can answer with", async () => {
    const source = readFileSync(
      fileURLToPath(new URL("../../src/remote/http/wire.ts", import.meta.url)),
      "utf8",
    );
    const table = source.slice(
      source.indexOf("const STATUS"),
      source.indexOf("};", source.indexOf("const STATUS")),
    );
    const codes = [...table.matchAll(/(OCIAPP_[A-Z_]+): (\d{3})/g)].filter(
      ([, code]) => code !== "OCIAPP_CALL_LOST",
    );
    expect(codes.length).toBeGreaterThan(15);
    for (const [, code, status] of codes) {
      expect(SPEC.components.responses.Error.description).toContain(code as string);
      expect(SPEC.components.responses.Error.description).toMatch(new RegExp(`${status}[^;]*${code}`));
    }
  });
});
