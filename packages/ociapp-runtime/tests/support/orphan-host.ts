// A host process that warms a runtime and then waits to be killed (SIGKILL: no close()).
// Usage: orphan-host.ts <artifact> <socketDir> <orphanTimeout ms>
import { Runtime } from "../../src/index.js";

const [artifact, socketDir, orphanTimeout] = process.argv.slice(2) as [string, string, string];
const runtime = new Runtime({ socketDir, orphanTimeout: Number(orphanTimeout), minInstances: 1 });
await runtime.warm(artifact);
process.stdout.write(`${JSON.stringify({ runtimeId: runtime.id, pid: process.pid })}\n`);
setInterval(() => undefined, 60_000);
