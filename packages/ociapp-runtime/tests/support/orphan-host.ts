// A host process that warms a runtime and then waits to be killed (SIGKILL: no close()).
// Usage: orphan-host.ts <artifact> <socketDir> <orphanTimeout ms>
import { Runtime } from "../../src/index.js";
import { ENGINE_RUNTIME_OPTIONS, testEngine } from "./test-engine.js";

// The engine under test (runtime.engine.test.ts: OCIAPP_TEST_ENGINE_SOCKET or _KIND), else the default.
const engine = testEngine();

const [artifact, socketDir, orphanTimeout] = process.argv.slice(2) as [string, string, string];
const runtime = new Runtime({
  ...ENGINE_RUNTIME_OPTIONS,
  engine,
  socketDir,
  orphanTimeout: Number(orphanTimeout),
  minInstances: 1,
});
await runtime.warm(artifact);
process.stdout.write(`${JSON.stringify({ runtimeId: runtime.id, pid: process.pid })}\n`);
setInterval(() => undefined, 60_000);
