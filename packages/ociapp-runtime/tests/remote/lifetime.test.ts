import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// A RemoteExecutor never keeps a process alive: after close(), and even when it is left open idle.

const INDEX = fileURLToPath(new URL("../../src/index.ts", import.meta.url));

describe("RemoteExecutor and process lifetime", () => {
  let work: string;
  let pki: TestPki;
  let test: TestAgent;
  let artifact: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "remote-lifetime-"));
    pki = await makePki(work);
    artifact = (await writeArtifact(join(work, "a.ociapp"), "lifetime")).path;
    test = await startTestAgent(pki);
  });

  afterAll(async () => {
    await test.stop();
    await rm(work, { recursive: true, force: true });
  });

  for (const close of [true, false]) {
    it(`a process that made calls exits by itself ${close ? "after close()" : "with the executor left open"}`, async () => {
      const script = join(work, `client-${close}.mts`);
      await writeFile(
        script,
        `import { readFileSync } from "node:fs";
import { RemoteExecutor } from ${JSON.stringify(INDEX)};
const remote = new RemoteExecutor({ agents: [${JSON.stringify(test.agent.url)}], token: ${JSON.stringify(TOKENS.admin)}, ca: readFileSync(${JSON.stringify(pki.caPath)}), healthInterval: 100 });
console.log(JSON.stringify(await remote.execute(${JSON.stringify(artifact)}, { op: "echo", value: 1 })));
${close ? "await remote.close();" : ""}
`,
      );
      const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      clearTimeout(timer);
      expect(code).toBe(0);
      expect(output).toContain('"value":1');
    });
  }
});
