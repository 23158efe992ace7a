// A host process that executes once on a Runtime with a long shutdownTimeout, closes it, and then
// has nothing left to do: it must exit at once, with nothing of the runtime keeping it alive.
// Usage: close-then-exit.ts <artifact> <socketDir>
// Prints one JSON line when close() has resolved: { closedAt } (Date.now()).
import { Runtime } from "../../src/index.js";
import { ENGINE_RUNTIME_OPTIONS, testEngine } from "./test-engine.js";

// The engine under test (runtime.engine.test.ts: OCIAPP_TEST_ENGINE_SOCKET or _KIND), else the default.
const engine = testEngine();

const [artifact, socketDir] = process.argv.slice(2) as [string, string];
const runtime = new Runtime({ ...ENGINE_RUNTIME_OPTIONS, engine, socketDir, shutdownTimeout: 60_000 });
await runtime.execute(artifact, { op: "echo", value: "once" });
await runtime.close();
process.stdout.write(`${JSON.stringify({ closedAt: Date.now() })}\n`);
