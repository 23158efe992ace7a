import { describe, expect, it } from "vitest";
import { BuildError } from "../src/errors.js";
import { runTool } from "../src/subprocess.js";

describe("runTool", () => {
  const missing = { code: "OCIAPP_BUILD_DOCKER_NOT_FOUND", message: "tool not found: install it" } as const;

  it("turns a missing executable into the BuildError it is given", async () => {
    const error = await runTool("ociapp-no-such-tool", ["--version"], {}, missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BuildError);
    expect(error).toMatchObject({ code: missing.code, message: missing.message });
    expect((error as BuildError).cause).toMatchObject({ code: "ENOENT" });
  });

  it("returns a tool's exit code and output as they are", async () => {
    const result = await runTool(
      process.execPath,
      ["-e", "process.stdout.write('out'); process.exit(3)"],
      {},
      missing,
    );
    expect(result).toMatchObject({ exitCode: 3, stdout: "out" });
  });
});
