import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, stat } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeJson,
  encodeFrame,
  FrameDecoder,
  parseServerMessage,
  type ServerMessage,
} from "ociapp/protocol";
import { docker } from "../../../../tests/engine/docker.js";

export const TEST_LABEL = "dev.ociapp.test=ociapp-build";

/** A unique image reference for one test run, so parallel runs never share (or remove) each other's. */
export function uniqueImage(name: string): string {
  return `ociapp-build-test/${name}:${process.pid}-${randomBytes(3).toString("hex")}`;
}

export interface RunningApp {
  id: string;
  socketPath: string;
  stop(): Promise<void>;
}

/**
 * Starts a container of `image` the way the runtime does: no network, an init process, and its
 * socket folder bind-mounted at /run/ociapp. The folder is world-writable so the image's numeric
 * user can create the socket.
 */
export async function startApp(image: string): Promise<RunningApp> {
  const socketDir = await mkdtemp(join(tmpdir(), "ociapp-build-sock-"));
  await chmod(socketDir, 0o777);
  let id = "";
  const stop = async () => {
    if (id) await docker(["rm", "-f", id]).catch(() => undefined);
    await rm(socketDir, { recursive: true, force: true });
  };
  try {
    id = (
      await docker([
        "run",
        "-d",
        "--init",
        "--network",
        "none",
        "--label",
        TEST_LABEL,
        "-v",
        `${socketDir}:/run/ociapp`,
        image,
      ])
    ).trim();
    const socketPath = join(socketDir, "app.sock");
    const deadline = Date.now() + 30_000;
    while (!(await stat(socketPath).catch(() => undefined))) {
      if (Date.now() > deadline) {
        const logs = await docker(["logs", id]).catch((error: Error) => error.message);
        const state = await docker(["inspect", "--format", "{{json .State}}", id]).catch(
          (error: Error) => error.message,
        );
        throw new Error(`the container never created its socket; state ${state.trim()}; logs:\n${logs}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { id, socketPath, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Connects, reads the hello, sends one request and returns [hello, final message]. */
export function requestOnce(socketPath: string, payload: unknown, id = "r1"): Promise<ServerMessage[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const decoder = new FrameDecoder();
    const messages: ServerMessage[] = [];
    const timer = setTimeout(
      () => finish(new Error(`no answer within 15 s (got ${JSON.stringify(messages)})`)),
      15_000,
    );
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(messages);
    };
    socket.on("error", (error) => finish(error));
    socket.on("data", (chunk) => {
      try {
        for (const body of decoder.push(chunk)) {
          const message = parseServerMessage(decodeJson(body));
          messages.push(message);
          if (message.type === "hello") socket.write(encodeFrame({ type: "request", id, payload }));
          else if (message.id === id) finish();
        }
      } catch (error) {
        finish(error as Error);
      }
    });
  });
}

export async function removeImage(image: string): Promise<void> {
  await docker(["image", "rm", "-f", image]).catch(() => undefined);
}
