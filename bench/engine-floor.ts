import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";

// The engine's own floor for a cold start, in protocol v2's direction: the host listens, the
// container connects. Create + start of the artifact's image, through the same Engine API and with
// the same confinement as the runtime's defaults, until a bare Node client inside connects to a
// host-side listener on the bind-mounted folder and says hello (one length-prefixed frame). No SDK,
// no app, no attach or event stream, no protocol parsing: what any runtime on this engine would pay.

/** A bare client: connect to the host's socket, write one hello frame, wait to be stopped. */
const BARE_CLIENT =
  'const b=Buffer.from(\'{"type":"hello"}\'),h=Buffer.alloc(4);h.writeUInt32BE(b.length);' +
  "const s=require('node:net').connect('/run/ociapp/host.sock',()=>s.write(Buffer.concat([h,b])));" +
  "s.on('error',()=>process.exit(1));process.on('SIGTERM',()=>process.exit(0));";

/** The runtime's default confinement, as Engine API HostConfig fields (see ociapp-runtime's options). */
export const DEFAULT_HOST_CONFIG = {
  NetworkMode: "none",
  ReadonlyRootfs: true,
  Tmpfs: { "/tmp": "rw,nosuid,nodev,size=64m" },
  CapDrop: ["ALL"],
  SecurityOpt: ["no-new-privileges"],
  Init: true,
  Memory: 512 * 1024 * 1024,
  MemorySwap: 512 * 1024 * 1024,
  NanoCpus: 1e9,
  PidsLimit: 256,
};

/** The same confinement as `docker run` flags, for the in-container raw baseline. */
export const DEFAULT_RUN_FLAGS = [
  "--network=none",
  "--read-only",
  "--tmpfs=/tmp:rw,nosuid,nodev,size=64m",
  "--cap-drop=ALL",
  "--security-opt=no-new-privileges",
  "--init",
  "--memory=512m",
  "--memory-swap=512m",
  "--cpus=1",
  "--pids-limit=256",
  "--user=10001:10001",
];

/** Resolves once the first connection's first 4 + n bytes (one frame) have arrived. */
function firstFrame(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.once("connection", (socket) => {
      let bytes = 0;
      socket.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes >= 4 + 16) resolve();
      });
      socket.on("error", () => undefined);
    });
  });
}

/**
 * Milliseconds from the create request until the bare client's hello arrived. `runtime` is the OCI
 * runtime ("runc" by default, "runsc" for gVisor).
 */
export async function measureEngineFloor(image: string, runtime = "runc"): Promise<number> {
  const docker = new Dockerode();
  const dir = await mkdtemp(join(tmpdir(), "ociapp-floor-"));
  await chmod(dir, 0o755);
  const server = createServer();
  const socket = join(dir, "host.sock");
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  await chmod(socket, 0o666);
  const hello = firstFrame(server);
  let container: Dockerode.Container | undefined;
  try {
    const start = process.hrtime.bigint();
    container = await docker.createContainer({
      Image: image,
      Entrypoint: ["node", "-e", BARE_CLIENT],
      Cmd: [],
      User: "10001:10001",
      Labels: { "dev.ociapp.bench": "true" },
      HostConfig: {
        ...DEFAULT_HOST_CONFIG,
        Runtime: runtime,
        AutoRemove: true,
        Binds: [`${dir}:/run/ociapp:ro`],
      },
    });
    await container.start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      hello,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("the bare client never said hello")), 30_000);
      }),
    ]).finally(() => clearTimeout(timer));
    return Number(process.hrtime.bigint() - start) / 1e6;
  } finally {
    await container?.remove({ force: true }).catch(() => undefined);
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}
