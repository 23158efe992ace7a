import { describe, expect, it } from "vitest";
import { fastServeOptions, NUMERIC_OPTIONS } from "../src/cli/options.js";

// The container's `ociapp serve --app <spec>` skips commander; anything else must fall back to it
// (undefined), so that help, errors and unusual flags stay commander's.
describe("fastServeOptions", () => {
  const defaults = Object.fromEntries(NUMERIC_OPTIONS.map((option) => [option.key, option.fallback]));

  it("takes --app and every setting from the environment", () => {
    expect(
      fastServeOptions(["--app", "dist/main.js#app"], {
        OCIAPP_CONNECT: "/run/ociapp/host.sock",
        OCIAPP_MAX_CONCURRENCY: "8",
        OCIAPP_ORPHAN_TIMEOUT_MS: " 5000 ",
      }),
    ).toEqual({
      ...defaults,
      app: "dist/main.js#app",
      connect: "/run/ociapp/host.sock",
      maxConcurrency: 8,
      orphanTimeout: 5000,
    });
    expect(fastServeOptions(["--app=main.js"], {})).toEqual({ ...defaults, app: "main.js" });
    expect(fastServeOptions([], { OCIAPP_APP: "main.js", OCIAPP_SOCKET: "/s" })).toEqual({
      ...defaults,
      app: "main.js",
      socket: "/s",
    });
  });

  it("leaves everything else to commander", () => {
    expect(fastServeOptions(["--app", "main.js", "--max-concurrency", "4"], {})).toBeUndefined();
    expect(fastServeOptions(["--help"], {})).toBeUndefined();
    expect(fastServeOptions([], {})).toBeUndefined();
    expect(fastServeOptions(["--app", "-x"], {})).toBeUndefined();
    expect(fastServeOptions(["--app", "main.js"], { OCIAPP_MAX_CONCURRENCY: "0" })).toBeUndefined();
    expect(fastServeOptions(["--app", "main.js"], { OCIAPP_MAX_DEPTH: "lots" })).toBeUndefined();
  });
});
