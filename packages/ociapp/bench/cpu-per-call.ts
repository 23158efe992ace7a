// Server CPU per call of `ociapp serve`, as the README's figures are measured: the server (from the
// TypeScript sources, the zod echo app of examples/echo-app) pinned to one core, this pipelining
// client pinned to the other, 256 concurrent callers on one connection, 300,000 calls; the server's
// CPU time read from /proc/<pid>/stat around the measured calls.
//
//   taskset -c 1 node --import tsx packages/ociapp/bench/cpu-per-call.ts [--cli <cli-entry.ts>]
//     [--calls 300000] [--callers 256] [--log-records]
//
// --cli runs another copy of the CLI (say an older commit's tests/helpers/cli-entry.ts, extracted
// with git archive) against the same app. The client answers a v2 server's hello with a host hello
// (listen mode: --socket), so one script measures both protocol versions.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = resolve(import.meta.dirname, "../../..");
const { values } = parseArgs({
  options: {
    cli: { type: "string", default: join(ROOT, "packages/ociapp/tests/helpers/cli-entry.ts") },
    calls: { type: "string", default: "300000" },
    callers: { type: "string", default: "256" },
    "log-records": { type: "boolean", default: false },
  },
});
const CALLS = Number(values.calls);
const CALLERS = Number(values.callers);
const WARMUP = 20_000;

function frame(message: object): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** utime + stime of a process, in clock ticks (100 per second on Linux). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

class Client {
  readonly #socket: Socket;
  readonly #pending = new Map<string, () => void>();
  #buffered = Buffer.alloc(0);
  #outgoing: Buffer[] = [];
  #next = 0;
  hello: Promise<Record<string, unknown>>;
  #onHello!: (hello: Record<string, unknown>) => void;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.hello = new Promise((resolveHello) => {
      this.#onHello = resolveHello;
    });
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
  }

  call(): Promise<void> {
    const id = String(this.#next++);
    return new Promise((resolveCall) => {
      this.#pending.set(id, resolveCall);
      if (this.#outgoing.push(frame({ type: "request", id, payload: { value: "hello" } })) === 1) {
        queueMicrotask(() => {
          const frames = this.#outgoing;
          this.#outgoing = [];
          this.#socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
        });
      }
    });
  }

  #onData(chunk: Buffer): void {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    while (this.#buffered.length >= 4) {
      const length = this.#buffered.readUInt32BE(0);
      if (this.#buffered.length < 4 + length) break;
      const message = JSON.parse(this.#buffered.toString("utf8", 4, 4 + length)) as Record<string, unknown>;
      this.#buffered = this.#buffered.subarray(4 + length);
      if (message.type === "hello") {
        if (message.protocol === 2) {
          this.#socket.write(
            frame({
              type: "hello",
              protocol: 2,
              role: "host",
              limits: { maxFrameBytes: 16 * 1024 * 1024, maxDepth: 64, maxValues: 1_000_000 },
              capabilities: ["cancel", "ping"],
              logRecords: values["log-records"],
            }),
          );
        }
        this.#onHello(message);
        continue;
      }
      if (message.type === "log") continue;
      const id = message.id as string;
      const done = this.#pending.get(id);
      this.#pending.delete(id);
      done?.();
    }
  }
}

async function run(client: Client, calls: number): Promise<void> {
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < calls) {
      next++;
      await client.call();
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, loop));
}

const dir = mkdtempSync(join(tmpdir(), "ociapp-cpu-"));
const socketPath = join(dir, "app.sock");
const server = spawn(
  "taskset",
  [
    "-c",
    "0",
    process.execPath,
    "--conditions=source",
    "--import",
    "tsx",
    values.cli,
    "serve",
    "--app",
    "examples/echo-app/src/main.ts#app",
    "--socket",
    socketPath,
    "--max-concurrency",
    "256",
  ],
  { cwd: ROOT, stdio: ["ignore", "inherit", "pipe"] },
);
try {
  await new Promise<void>((resolveStart, rejectStart) => {
    let stderr = "";
    server.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      if (stderr.includes("serving ")) resolveStart();
    });
    server.once("exit", (code) => rejectStart(new Error(`server exited ${code}: ${stderr}`)));
  });
  const socket = connect(socketPath);
  await new Promise((resolveConnect) => socket.once("connect", resolveConnect));
  const client = new Client(socket);
  const hello = await client.hello;
  await run(client, WARMUP);
  const before = cpuTicks(server.pid!);
  const started = process.hrtime.bigint();
  await run(client, CALLS);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const ticks = cpuTicks(server.pid!) - before;
  const usPerCall = ((ticks / 100) * 1e6) / CALLS;
  console.log(
    JSON.stringify({
      protocol: hello.protocol,
      logRecords: values["log-records"],
      calls: CALLS,
      callers: CALLERS,
      serverCpuUsPerCall: Math.round(usPerCall * 100) / 100,
      callsPerSecond: Math.round(CALLS / seconds),
    }),
  );
  socket.destroy();
} finally {
  server.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
