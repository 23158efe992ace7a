import { type ChildProcess, execFile, fork } from "node:child_process";
import { chmod, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { RawEchoClient } from "./raw-client.js";

const execFileAsync = promisify(execFile);
const ECHO_SERVER = fileURLToPath(new URL("./echo-server.cjs", import.meta.url));

export interface RawEcho {
  client: RawEchoClient;
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

/** The same echo server inside a container of the base image, with the runtime's default limits. */
export async function startContainerEcho(image: string, runFlags: string[]): Promise<RawEcho> {
  const dir = await mkdtemp(join(tmpdir(), "ociapp-bench-"));
  await chmod(dir, 0o777);
  const { stdout } = await execFileAsync("docker", [
    "run",
    "-d",
    "--rm",
    "--label",
    "dev.ociapp.bench=true",
    ...runFlags,
    // The artifact's own entrypoint is `ociapp serve`; the baseline runs the bare echo server instead.
    "--entrypoint",
    "node",
    "-v",
    `${ECHO_SERVER}:/bench/echo-server.cjs:ro`,
    "-v",
    `${dir}:/run/ociapp`,
    image,
    "/bench/echo-server.cjs",
    "/run/ociapp/echo.sock",
  ]);
  const id = stdout.trim();
  const remove = async () => {
    await execFileAsync("docker", ["rm", "-f", id]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const socket = join(dir, "echo.sock");
  try {
    const deadline = Date.now() + 30_000;
    while (!(await stat(socket).catch(() => null))) {
      if (Date.now() > deadline) throw new Error("the in-container echo server never listened");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const client = await RawEchoClient.connect(socket);
    return {
      client,
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
