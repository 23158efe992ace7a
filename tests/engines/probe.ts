/**
 * Probes a Docker-compatible engine for exactly what ociapp-runtime relies on, through dockerode
 * (the runtime's own client), and prints one JSON object of facts. Facts, not assertions: the
 * engine-probe test and docs/engines.md read them.
 *
 *   node --import tsx tests/engines/probe.ts [--socket /run/x.sock] [--runtime runsc]
 *        [--image node:20-bookworm-slim] [--artifact x.ociapp ...] [--only name,name]
 *
 * Each container probe runs the runtime's sequence: events stream (oom, die) open, create with the
 * runtime's HostConfig, attach, wait?condition=next-exit armed before start, start, exit.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, createReadStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";

interface Args {
  socket?: string;
  runtime?: string;
  image: string;
  artifacts: string[];
  only?: Set<string>;
  summary: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { image: "node:20-bookworm-slim", artifacts: [], summary: false };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case "--socket":
        args.socket = value;
        i++;
        break;
      case "--runtime":
        args.runtime = value;
        i++;
        break;
      case "--image":
        args.image = value ?? args.image;
        i++;
        break;
      case "--artifact":
        if (value) args.artifacts.push(value);
        i++;
        break;
      case "--summary":
        args.summary = true;
        break;
      case "--only":
        args.only = new Set((value ?? "").split(","));
        i++;
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const docker = new Dockerode(args.socket ? { socketPath: args.socket } : undefined);
const LABEL = "ociapp.probe";
const runId = `${process.pid}-${Date.now()}`;

interface EngineEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

const events: EngineEvent[] = [];
let eventStream: NodeJS.ReadableStream | undefined;

async function openEvents(): Promise<void> {
  eventStream = (await docker.getEvents({
    filters: { type: ["container"], event: ["oom", "die"] },
  })) as NodeJS.ReadableStream;
  let pending = "";
  eventStream.on("data", (chunk: Buffer) => {
    pending += chunk.toString();
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) {
        try {
          events.push(JSON.parse(line) as EngineEvent);
        } catch {
          events.push({ status: `unparsed: ${line.slice(0, 200)}` });
        }
      }
      newline = pending.indexOf("\n");
    }
  });
  eventStream.on("error", () => undefined);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  return Promise.race([promise, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms).unref())]);
}

/** The runtime's wait: POST /containers/{id}/wait?condition=next-exit, resolved when headers arrive. */
function armWait(id: string): Promise<{ exit: Promise<{ body: string; statusCode: number | null }> }> {
  return new Promise((armed, failed) => {
    docker.modem.dial(
      {
        path: `/containers/${id}/wait?`,
        method: "POST",
        isStream: true,
        statusCodes: { 200: true, 400: "bad parameter", 404: "no such container", 500: "server error" },
        options: { condition: "next-exit" },
      },
      (error: unknown, result: unknown) => {
        if (error) {
          failed(error);
          return;
        }
        const response = result as IncomingMessage;
        armed({
          exit: new Promise((settle) => {
            let body = "";
            response.on("data", (chunk: Buffer) => {
              body += chunk.toString();
            });
            const finish = () => {
              let statusCode: number | null = null;
              try {
                const parsed = JSON.parse(body) as { StatusCode?: number };
                if (typeof parsed.StatusCode === "number") statusCode = parsed.StatusCode;
              } catch {}
              settle({ body: body.trim(), statusCode });
            };
            response.on("end", finish);
            response.on("error", finish);
          }),
        });
      },
    );
  });
}

function errorText(error: unknown): string {
  const e = error as { statusCode?: number; json?: { message?: string } | string; message?: string };
  const detail = typeof e?.json === "object" && e.json?.message ? e.json.message : undefined;
  return `${e?.statusCode ?? ""} ${detail ?? (typeof e?.json === "string" ? e.json : e?.message) ?? String(error)}`.trim();
}

interface RunOptions {
  cmd: string[];
  user?: string;
  hostConfig?: Dockerode.HostConfig;
  autoRemove?: boolean;
  /** Run while the container is up, then resolve (e.g. kill it). */
  during?: (id: string) => Promise<unknown>;
  timeoutMs?: number;
  binds?: string[];
}

interface RunResult {
  created: boolean;
  createError?: string;
  createMs?: number;
  waitArmedBeforeStart?: boolean | string;
  attach?: { framing: "multiplexed" | "raw" | "none"; stdout: string; stderr: string; raw?: string };
  startMs?: number;
  startError?: string;
  exitCode?: number | null;
  waitBody?: string;
  exitMs?: number;
  events: { action?: string; attributes?: Record<string, string>; keys: string[] }[];
  inspect?: { oomKilled?: boolean; exitCode?: number; status?: string; hostConfig?: unknown };
  removedAfterExit?: boolean | string;
  during?: unknown;
}

function eventsOf(id: string): RunResult["events"] {
  return events
    .filter((e) => (e.Actor?.ID ?? e.id) === id)
    .map((e) => ({
      action: e.Action ?? e.status,
      attributes: Object.fromEntries(
        Object.entries(e.Actor?.Attributes ?? {}).filter(
          ([k]) => !k.startsWith("org.") && !k.startsWith("io."),
        ),
      ),
      keys: Object.keys(e).sort(),
    }));
}

/** Resolves once an oom event for `id` arrived (true), or after `ms` (false). */
async function oomEventWithin(id: string, ms: number): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (events.some((e) => (e.Actor?.ID ?? e.id) === id && (e.Action ?? e.status) === "oom")) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function demux(raw: Buffer): { framing: "multiplexed" | "raw" | "none"; stdout: string; stderr: string } {
  if (raw.length === 0) return { framing: "none", stdout: "", stderr: "" };
  if (
    raw.length >= 8 &&
    raw[0] !== undefined &&
    raw[0] <= 2 &&
    raw[1] === 0 &&
    raw[2] === 0 &&
    raw[3] === 0
  ) {
    let offset = 0;
    let stdout = "";
    let stderr = "";
    while (offset + 8 <= raw.length) {
      const type = raw[offset];
      const size = raw.readUInt32BE(offset + 4);
      const payload = raw.subarray(offset + 8, offset + 8 + size).toString();
      if (type === 2) stderr += payload;
      else stdout += payload;
      offset += 8 + size;
    }
    return { framing: "multiplexed", stdout, stderr };
  }
  return { framing: "raw", stdout: raw.toString(), stderr: "" };
}

async function run(name: string, options: RunOptions): Promise<RunResult> {
  const result: RunResult = { created: false, events: [] };
  const autoRemove = options.autoRemove ?? true;
  const t0 = performance.now();
  let container: Dockerode.Container;
  try {
    container = await docker.createContainer({
      name: `ociapp-probe-${name}-${runId}`,
      Image: args.image,
      Cmd: options.cmd,
      User: options.user ?? "10001:10001",
      Labels: { [LABEL]: runId, "ociapp.probe.case": name },
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        AutoRemove: autoRemove,
        Binds: options.binds ?? [],
        NetworkMode: "none",
        ReadonlyRootfs: true,
        Tmpfs: { "/tmp": "rw,noexec,nosuid,size=16m" },
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        Init: true,
        Memory: 256 * 1024 * 1024,
        MemorySwap: 256 * 1024 * 1024,
        NanoCpus: 1_000_000_000,
        PidsLimit: 64,
        LogConfig: { Type: "json-file", Config: { "max-size": "1m", "max-file": "1" } },
        ...(args.runtime ? { Runtime: args.runtime } : {}),
        ...options.hostConfig,
      },
    });
  } catch (error) {
    result.createError = errorText(error);
    return result;
  }
  result.created = true;
  result.createMs = Math.round(performance.now() - t0);
  const id = container.id;
  if (!autoRemove) {
    const info = await container.inspect();
    result.inspect = { hostConfig: pickHostConfig(info.HostConfig) };
  }
  const waiting = armWait(id);
  const armedFirst = await withTimeout(waiting, 3000);
  result.waitArmedBeforeStart = armedFirst === "timeout" ? "no: headers did not arrive within 3 s" : true;
  const attached = (await container.attach({
    stream: true,
    stdout: true,
    stderr: true,
  })) as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  attached.on("data", (chunk: Buffer) => chunks.push(chunk));
  const attachEnded = new Promise<void>((resolve) => {
    attached.on("end", resolve);
    attached.on("close", resolve);
    attached.on("error", () => resolve());
  });
  const t1 = performance.now();
  try {
    await container.start();
  } catch (error) {
    result.startError = errorText(error);
  }
  result.startMs = Math.round(performance.now() - t1);
  if (options.during && !result.startError) {
    try {
      result.during = await options.during(id);
    } catch (error) {
      result.during = `error: ${errorText(error)}`;
    }
  }
  const wait = await withTimeout(
    waiting.then((w) => w.exit),
    options.timeoutMs ?? 30_000,
  );
  if (wait === "timeout") {
    result.exitCode = undefined;
    result.waitBody = `no exit within ${options.timeoutMs ?? 30_000} ms`;
    const info = await container.inspect().catch(() => undefined);
    result.inspect = { ...result.inspect, status: info?.State.Status, oomKilled: info?.State.OOMKilled };
    await container.remove({ force: true }).catch(() => undefined);
    result.events = eventsOf(id);
    return result;
  } else {
    result.exitCode = wait.statusCode;
    result.waitBody = wait.body;
  }
  result.exitMs = Math.round(performance.now() - t1);
  await withTimeout(attachEnded, 2000);
  const raw = Buffer.concat(chunks);
  result.attach = { ...demux(raw), raw: raw.subarray(0, 64).toString("hex") };
  await new Promise((r) => setTimeout(r, 500));
  result.events = eventsOf(id);
  if (autoRemove) {
    let gone: boolean | string = false;
    for (let i = 0; i < 50; i++) {
      try {
        await container.inspect();
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 404) {
          gone = true;
          break;
        }
        gone = errorText(error);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    result.removedAfterExit = gone === false ? "no: still there 5 s after exit" : gone;
    if (gone !== true) await container.remove({ force: true }).catch(() => undefined);
  } else {
    const info = await container.inspect();
    result.inspect = {
      ...result.inspect,
      oomKilled: info.State.OOMKilled,
      exitCode: info.State.ExitCode,
      status: info.State.Status,
    };
    await container.remove({ force: true }).catch(() => undefined);
  }
  return result;
}

function pickHostConfig(hc: Dockerode.HostConfig | undefined): unknown {
  if (!hc) return undefined;
  return {
    AutoRemove: hc.AutoRemove,
    Binds: hc.Binds,
    NetworkMode: hc.NetworkMode,
    ReadonlyRootfs: hc.ReadonlyRootfs,
    Tmpfs: hc.Tmpfs,
    CapDrop: hc.CapDrop,
    SecurityOpt: hc.SecurityOpt,
    Init: hc.Init,
    Memory: hc.Memory,
    MemorySwap: hc.MemorySwap,
    NanoCpus: hc.NanoCpus,
    PidsLimit: hc.PidsLimit,
    LogConfig: hc.LogConfig,
    Runtime: hc.Runtime,
  };
}

/** A host folder like the runtime's: 0755 folder inside a 0700 parent, a 0666 socket a host process listens on. */
async function hostSocket(): Promise<{
  folder: string;
  server: Server;
  received: string[];
  close: () => void;
}> {
  const parent = mkdtempSync(join(tmpdir(), "ociapp-probe-"));
  chmodSync(parent, 0o700);
  const folder = join(parent, "sock");
  mkdirSync(folder, { mode: 0o755 });
  chmodSync(folder, 0o755);
  const path = join(folder, "runtime.sock");
  const received: string[] = [];
  const server = createServer((socket) => {
    socket.on("data", (data) => {
      received.push(data.toString());
      socket.write(`echo:${data}`);
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  chmodSync(path, 0o666);
  return {
    folder,
    server,
    received,
    close: () => {
      server.close();
      rmSync(parent, { recursive: true, force: true });
    },
  };
}

const NODE = (script: string) => ["node", "-e", script];

type Probe = () => Promise<unknown>;

const probes: Record<string, Probe> = {
  async info() {
    const info = (await docker.info()) as Record<string, unknown>;
    const version = (await docker.version()) as unknown as Record<string, unknown>;
    return {
      ServerVersion: info.ServerVersion,
      Driver: info.Driver,
      DriverStatus: info.DriverStatus,
      Runtimes: Object.keys((info.Runtimes as object) ?? {}),
      DefaultRuntime: info.DefaultRuntime,
      CgroupVersion: info.CgroupVersion,
      CgroupDriver: info.CgroupDriver,
      SecurityOptions: info.SecurityOptions,
      ApiVersion: version.ApiVersion,
      MinAPIVersion: version.MinAPIVersion,
      Components: (version.Components as { Name: string; Version: string }[] | undefined)?.map(
        (c) => `${c.Name} ${c.Version}`,
      ),
    };
  },

  async load() {
    const out: Record<string, unknown> = {};
    for (const artifact of args.artifacts) {
      const index = JSON.parse(execFileSync("tar", ["-xOf", artifact, "index.json"]).toString()) as {
        manifests: { digest: string; annotations?: Record<string, string> }[];
      };
      const manifestDigest = index.manifests[0]?.digest ?? "";
      const manifest = JSON.parse(
        execFileSync("tar", ["-xOf", artifact, `blobs/sha256/${manifestDigest.slice(7)}`]).toString(),
      ) as { config: { digest: string }; layers: { mediaType: string }[] };
      const configDigest = manifest.config.digest;
      const entry: Record<string, unknown> = {
        manifestDigest,
        configDigest,
        annotations: index.manifests[0]?.annotations,
        layerMediaTypes: [...new Set(manifest.layers.map((l) => l.mediaType))],
      };
      const before = new Set((await docker.listImages({ all: true })).map((i) => i.Id));
      const name = (entry.annotations as Record<string, string> | undefined)?.["io.containerd.image.name"];
      const nameExisted = name
        ? await docker
            .getImage(name)
            .inspect()
            .then(() => true)
            .catch(() => false)
        : true;
      const t0 = performance.now();
      try {
        const response = (await docker.loadImage(createReadStream(artifact), {
          quiet: true,
        })) as NodeJS.ReadableStream;
        let body = "";
        response.on("data", (c: Buffer) => {
          body += c.toString();
        });
        await new Promise((resolve, reject) => {
          response.on("end", resolve);
          response.on("error", reject);
        });
        entry.loadResponse = body.trim().slice(0, 600);
      } catch (error) {
        entry.loadError = errorText(error);
      }
      entry.loadMs = Math.round(performance.now() - t0);
      const after = await docker.listImages({ all: true });
      entry.newImages = after
        .filter((i) => !before.has(i.Id))
        .map((i) => ({ Id: i.Id, RepoTags: i.RepoTags, RepoDigests: i.RepoDigests }));
      for (const [key, ref] of [
        ["inspectByManifestDigest", manifestDigest],
        ["inspectByConfigDigest", configDigest],
        [
          "inspectByName",
          (entry.annotations as Record<string, string> | undefined)?.["io.containerd.image.name"],
        ],
        [
          "inspectByRefName",
          (entry.annotations as Record<string, string> | undefined)?.["org.opencontainers.image.ref.name"],
        ],
      ] as const) {
        if (!ref) continue;
        try {
          const info = await docker.getImage(ref).inspect();
          entry[key] = { ref, Id: info.Id, RepoTags: info.RepoTags, RepoDigests: info.RepoDigests };
        } catch (error) {
          entry[key] = { ref, error: errorText(error) };
        }
      }
      out[artifact] = entry;
      // Leave the engine as it was: what this load added goes again (tags first, then IDs).
      const added = [
        ...(nameExisted || !name ? [] : [name]),
        ...(entry.newImages as { Id: string }[]).map((i) => i.Id),
      ];
      for (const ref of added)
        await docker
          .getImage(ref)
          .remove({ force: true })
          .catch(() => undefined);
    }
    return out;
  },

  async exit3() {
    return run("exit3", { cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"] });
  },

  async kill() {
    return run("kill", {
      cmd: NODE("setInterval(() => {}, 1000)"),
      during: async (id) => {
        await new Promise((r) => setTimeout(r, 800));
        await docker.getContainer(id).kill({ signal: "SIGKILL" });
        return "SIGKILL sent";
      },
    });
  },

  async sigterm() {
    return run("sigterm", {
      cmd: NODE("setInterval(() => {}, 1000)"),
      during: async (id) => {
        await new Promise((r) => setTimeout(r, 800));
        await docker.getContainer(id).kill({ signal: "SIGTERM" });
        return "SIGTERM sent";
      },
    });
  },

  async oom() {
    // Buffers, not JS objects: V8's own heap limit must not end the process first.
    return run("oom", {
      cmd: NODE("const k=[];for(let i=0;i<400;i++){k.push(Buffer.alloc(1<<20,1))}console.log('survived')"),
      hostConfig: { Memory: 64 * 1024 * 1024, MemorySwap: 64 * 1024 * 1024 },
    });
  },

  async oomInspect() {
    return run("oom-inspect", {
      cmd: NODE("const k=[];for(let i=0;i<400;i++){k.push(Buffer.alloc(1<<20,1))}console.log('survived')"),
      hostConfig: { Memory: 64 * 1024 * 1024, MemorySwap: 64 * 1024 * 1024 },
      autoRemove: false,
    });
  },

  async oomThenKill() {
    // What a runtime can do when the oom event comes but the container does not exit (runsc).
    return run("oom-then-kill", {
      cmd: NODE("const k=[];for(let i=0;i<400;i++){k.push(Buffer.alloc(1<<20,1))}console.log('survived')"),
      hostConfig: { Memory: 64 * 1024 * 1024, MemorySwap: 64 * 1024 * 1024 },
      autoRemove: false,
      during: async (id) => {
        const t0 = performance.now();
        const oom = await oomEventWithin(id, 10_000);
        const oomMs = Math.round(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 1000));
        const info = await docker.getContainer(id).inspect();
        if (info.State.Running) {
          await docker
            .getContainer(id)
            .kill({ signal: "SIGKILL" })
            .catch(() => undefined);
          return `oom event ${oom ? `after ${oomMs} ms` : "missing"}; still running 1 s later: SIGKILL sent`;
        }
        return `oom event ${oom ? `after ${oomMs} ms` : "missing"}; exited by itself`;
      },
    });
  },

  async pids() {
    return run("pids", {
      cmd: ["sh", "-c", "for i in $(seq 60); do sleep 5 & echo $i; done"],
      hostConfig: { PidsLimit: 32 },
    });
  },

  async hardening() {
    return run("hardening", {
      cmd: [
        "sh",
        "-c",
        "id -u; id -g; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; tr '\\0' ' ' </proc/1/cmdline; echo; " +
          "(touch /x 2>/dev/null && echo root-writable) || echo root-readonly; " +
          "(touch /tmp/x && echo tmp-writable) || echo tmp-readonly; " +
          'node -e \'console.log(Object.keys(require("os").networkInterfaces()).join(","))\'; ' +
          "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null; " +
          "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; " +
          "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; uname -r",
      ],
      autoRemove: false,
    });
  },

  async uds() {
    const host = await hostSocket();
    try {
      const result = await run("uds", {
        cmd: NODE(
          "const s=require('net').connect('/run/ociapp/runtime.sock',()=>s.write('hello from '+process.getuid()));" +
            "s.on('data',d=>{console.log(String(d));s.end()});s.on('error',e=>{console.error('ERR',e.code);process.exit(5)})",
        ),
        binds: [`${host.folder}:/run/ociapp:ro`],
      });
      return { ...result, hostReceived: host.received };
    } finally {
      host.close();
    }
  },

  async coldStart() {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await run(`cold${i}`, { cmd: ["true"] });
      if (r.exitMs !== undefined && r.createMs !== undefined) times.push(r.createMs + r.exitMs);
    }
    times.sort((a, b) => a - b);
    return { createToExitMs: times, median: times[Math.floor(times.length / 2)] };
  },

  async forceRemove() {
    const container = await docker.createContainer({
      Image: args.image,
      Cmd: NODE("setInterval(() => {}, 1000)"),
      Labels: { [LABEL]: runId, "ociapp.probe.case": "force-remove" },
      HostConfig: {
        AutoRemove: true,
        NetworkMode: "none",
        ...(args.runtime ? { Runtime: args.runtime } : {}),
      },
    });
    await container.start();
    const listed = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${runId}`] } });
    const byOtherLabel = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=nope`] } });
    const t0 = performance.now();
    let removal: string;
    try {
      await container.remove({ force: true });
      removal = "ok";
    } catch (error) {
      removal = errorText(error);
    }
    const removeMs = Math.round(performance.now() - t0);
    let after: string;
    try {
      await container.inspect();
      after = "still there";
    } catch (error) {
      after = errorText(error);
    }
    // Killing an exited/removed container: which status?
    let killGone: string;
    try {
      await container.kill({ signal: "SIGKILL" });
      killGone = "ok";
    } catch (error) {
      killGone = errorText(error);
    }
    return {
      listedByLabel: listed.map((c) => ({ Id: c.Id.slice(0, 12), State: c.State, Labels: c.Labels })),
      listedByOtherLabel: byOtherLabel.length,
      removal,
      removeMs,
      inspectAfterRemove: after,
      killAfterRemove: killGone,
    };
  },

  async killExited() {
    const container = await docker.createContainer({
      Image: args.image,
      Cmd: ["true"],
      Labels: { [LABEL]: runId },
      HostConfig: { NetworkMode: "none", ...(args.runtime ? { Runtime: args.runtime } : {}) },
    });
    await container.start();
    await container.wait();
    let kill: string;
    try {
      await container.kill({ signal: "SIGTERM" });
      kill = "ok";
    } catch (error) {
      kill = errorText(error);
    }
    await container.remove({ force: true });
    return { killOfExitedContainer: kill };
  },

  async badCommand() {
    return run("bad-command", { cmd: ["/nonexistent"] });
  },
};

async function main(): Promise<void> {
  await openEvents();
  const results: Record<string, unknown> = {
    socket: args.socket ?? "default",
    runtime: args.runtime ?? "default",
  };
  for (const [name, probe] of Object.entries(probes)) {
    if (args.only && !args.only.has(name)) continue;
    if (name === "load" && args.artifacts.length === 0) continue;
    try {
      const outcome = await withTimeout(probe(), 120_000);
      results[name] = outcome === "timeout" ? { probeError: "no answer within 120 s" } : outcome;
    } catch (error) {
      results[name] = { probeError: errorText(error) };
    }
    process.stderr.write(`[probe] ${name} done\n`);
  }
  (eventStream as unknown as { destroy(): void } | undefined)?.destroy();
  // Nothing of ours may be left behind.
  const left = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${runId}`] } });
  for (const c of left)
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => undefined);
  results.leftContainers = left.length;
  console.log(args.summary ? summarize(results).join("\n") : JSON.stringify(results, null, 2));
  // A wait or attach request an engine never answers must not keep the probe alive.
  process.exit(0);
}

/** One line per probe: what the runtime needs to know. */
function summarize(results: Record<string, unknown>): string[] {
  const lines: string[] = [`engine ${results.socket} runtime ${results.runtime}`];
  const container = (name: string, extra?: (r: RunResult) => string) => {
    const r = results[name] as (RunResult & { probeError?: string }) | undefined;
    if (!r) return;
    if (r.probeError) {
      lines.push(`${name}: probe error ${r.probeError}`);
      return;
    }
    if (!r.created) {
      lines.push(`${name}: create failed: ${r.createError}`);
      return;
    }
    const events = r.events.map(
      (e) => `${e.action}${e.attributes?.exitCode ? `(exitCode=${e.attributes.exitCode})` : ""}`,
    );
    lines.push(
      `${name}: exit=${r.exitCode} wait=${r.waitBody} armedBeforeStart=${r.waitArmedBeforeStart} ` +
        `${r.startError ? `startError="${r.startError}" ` : ""}events=[${events.join(",")}] ` +
        `attach=${r.attach?.framing} stdout=${JSON.stringify(r.attach?.stdout)} stderr=${JSON.stringify(r.attach?.stderr)} ` +
        `${r.inspect?.oomKilled !== undefined ? `inspect.OOMKilled=${r.inspect.oomKilled} ` : ""}` +
        `${r.removedAfterExit !== undefined ? `autoRemoved=${r.removedAfterExit} ` : ""}` +
        `create=${r.createMs}ms start=${r.startMs}ms${extra ? ` ${extra(r)}` : ""}`,
    );
  };
  const info = results.info as Record<string, unknown> | undefined;
  if (info) lines.push(`info: ${JSON.stringify(info)}`);
  const load = results.load as Record<string, Record<string, unknown>> | undefined;
  for (const [artifact, entry] of Object.entries(load ?? {}))
    lines.push(`load ${artifact}: ${JSON.stringify(entry)}`);
  for (const name of ["exit3", "kill", "sigterm", "oom", "oomInspect", "oomThenKill", "pids", "badCommand"])
    container(name, (r) => (r.during ? `during=${JSON.stringify(r.during)}` : ""));
  container("hardening", (r) => `hostConfig=${JSON.stringify(r.inspect?.hostConfig)}`);
  container(
    "uds",
    (r) => `hostReceived=${JSON.stringify((r as unknown as { hostReceived: string[] }).hostReceived)}`,
  );
  for (const name of ["coldStart", "forceRemove", "killExited"]) {
    if (results[name]) lines.push(`${name}: ${JSON.stringify(results[name])}`);
  }
  lines.push(`leftContainers: ${results.leftContainers}`);
  return lines;
}

main().catch((error) => {
  console.error(`[probe] error: ${errorText(error)}`);
  process.exit(1);
});
