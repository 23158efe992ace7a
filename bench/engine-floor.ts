import { chmod, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";

// The engine's own floor for a cold start: create + start of the artifact's image, through the same
// Engine API and with the same confinement as the runtime's defaults, until a bare Node server
// inside listens on the bind-mounted socket. No SDK, no app, no handshake.

const BARE_SERVER =
  "const s=require('node:net').createServer(()=>{});" +
  "s.listen('/run/ociapp/floor.sock',()=>require('node:fs').chmodSync('/run/ociapp/floor.sock',0o666));" +
  "process.on('SIGTERM',()=>process.exit(0));";

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

export async function measureEngineFloor(image: string): Promise<number> {
  const docker = new Dockerode();
  const dir = await mkdtemp(join(tmpdir(), "ociapp-floor-"));
  await chmod(dir, 0o777);
  const socket = join(dir, "floor.sock");
  const start = process.hrtime.bigint();
  const container = await docker.createContainer({
    Image: image,
    Entrypoint: ["node", "-e", BARE_SERVER],
    Cmd: [],
    User: "10001:10001",
    Labels: { "dev.ociapp.bench": "true" },
    HostConfig: { ...DEFAULT_HOST_CONFIG, AutoRemove: true, Binds: [`${dir}:/run/ociapp:rw`] },
  });
  try {
    await container.start();
    const deadline = Date.now() + 30_000;
    while (!(await stat(socket).catch(() => null))) {
      if (Date.now() > deadline) throw new Error("the bare server never listened");
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return Number(process.hrtime.bigint() - start) / 1e6;
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
