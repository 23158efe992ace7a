import { type ChildProcess, execFile, fork } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { RawEchoClient } from "./raw-client.js";

const execFileAsync = promisify(execFile);
const ECHO_SERVER = fileURLToPath(new URL("./echo-server.cjs", import.meta.url));

export interface RawEcho {
  client: RawEchoClient;
  /** The engine's container id (in-container echo only). */
  id?: string;
  close(): Promise<void>;
}

/** The echo server as a plain Node child process: no container, no validation. */
export async function startHostEcho(): Promise<RawEcho> {
  const dir = await mkdtemp(join(tmpdir(), "ociapp-bench-"));
  const socket = join(dir, "echo.sock");
  const child: ChildProcess = fork(ECHO_SERVER, [socket], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  const client = await RawEchoClient.connect(socket);
  return {
    client,
    async close() {
      client.close();
      child.kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The same echo server inside a container of the image, with the runtime's default limits, in
 * protocol v2's direction: the host listens on a socket in a bind-mounted folder (read-only, as the
 * runtime mounts it) and the echo connects to it. `runtime` is the OCI runtime (runc, runsc).
 */
export async function startContainerEcho(
  image: string,
  runFlags: string[],
  runtime = "runc",
): Promise<RawEcho> {
  const dir = await mkdtemp(join(tmpdir(), "ociapp-bench-"));
  await chmod(dir, 0o755);
  const server = createServer();
  const path = join(dir, "host.sock");
  await new Promise<void>((resolve) => server.listen(path, resolve));
  await chmod(path, 0o666);
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  let id: string | undefined;
  const remove = async () => {
    server.close();
    if (id) await execFileAsync("docker", ["rm", "-f", id]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const { stdout } = await execFileAsync("docker", [
      "run",
      "-d",
      "--rm",
      "--label",
      "dev.ociapp.bench=true",
      `--runtime=${runtime}`,
      ...runFlags,
      // The artifact's own entrypoint is `ociapp serve`; the baseline runs the bare echo instead.
      "--entrypoint",
      "node",
      "-v",
      `${ECHO_SERVER}:/bench/echo-server.cjs:ro`,
      "-v",
      `${dir}:/run/ociapp:ro`,
      image,
      "/bench/echo-server.cjs",
      "--connect",
      "/run/ociapp/host.sock",
    ]);
    id = stdout.trim();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const socket = await Promise.race([
      accepted,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the in-container echo never connected")), 30_000);
      }),
    ]).finally(() => clearTimeout(timer));
    const client = new RawEchoClient(socket);
    return {
      client,
      id,
      async close() {
        client.close();
        await remove();
      },
    };
  } catch (error) {
    await remove();
    throw error;
  }
}
