import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AppHelloMessage,
  type AppMessage,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  encodeFrame,
  MessageReader,
  PROTOCOL_VERSION,
  parseAppMessage,
} from "ociapp/protocol";
import { docker } from "../../../../tests/engine/docker.js";

export const TEST_LABEL = "dev.ociapp.test=ociapp-build";

/** A unique image reference for one test run, so parallel runs never share (or remove) each other's. */
export function uniqueImage(name: string): string {
  return `ociapp-build-test/${name}:${process.pid}-${randomBytes(3).toString("hex")}`;
}

export interface RunningApp {
  id: string;
  /** The app's hello, the first frame of its connection. */
  hello: AppHelloMessage;
  /** Sends a request on the container's one connection and resolves with its final frame (15 s at most). */
  request(payload: unknown, id?: string): Promise<AppMessage>;
  stop(): Promise<void>;
}

/**
 * Starts a container of `image` the way the runtime does: no network, an init process, and a socket
 * folder of the host's mounted read-only at /run/ociapp, where the host listens on host.sock; the
 * image's `ociapp serve` connects to it (OCIAPP_CONNECT). Resolves once both hellos are exchanged.
 */
export async function startApp(image: string): Promise<RunningApp> {
  const socketDir = await mkdtemp(join(tmpdir(), "ociapp-build-sock-"));
  // The image's numeric user must reach host.sock: the folder is searchable and the socket 0666, but
  // the mount is read-only, so the container can create nothing there.
  await chmod(socketDir, 0o755);
  const server = createServer();
  let id = "";
  let socket: Socket | undefined;
  const stop = async () => {
    socket?.destroy();
    server.close();
    if (id) await docker(["rm", "-f", id]).catch(() => undefined);
    await rm(socketDir, { recursive: true, force: true });
  };
  try {
    const hostPath = join(socketDir, "host.sock");
    const accepted = new Promise<Socket>((resolve) => {
      server.once("connection", (connection: Socket) => {
        server.close();
        resolve(connection);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(hostPath, resolve);
    });
    await chmod(hostPath, 0o666);
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
        `${socketDir}:/run/ociapp:ro`,
        "-e",
        "OCIAPP_CONNECT=/run/ociapp/host.sock",
        image,
      ])
    ).trim();
    socket = await within(accepted, 30_000, async () => {
      const logs = await docker(["logs", id]).catch((error: Error) => error.message);
      const state = await docker(["inspect", "--format", "{{json .State}}", id]).catch(
        (error: Error) => error.message,
      );
      return `the container never connected; state ${state.trim()}; logs:\n${logs}`;
    });
    const connection = new HostConnection(socket);
    const hello = await within(connection.hello, 15_000, async () => "no hello from the container");
    return {
      id,
      hello,
      request: (payload, requestId = "r1") => connection.request(payload, requestId),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The host's side of the container's one connection: hellos both ways, answers matched by id. */
class HostConnection {
  readonly hello: Promise<AppHelloMessage>;
  readonly #socket: Socket;
  readonly #waiting = new Map<string, (message: AppMessage) => void>();
  #failure: Error | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    let resolveHello!: (hello: AppHelloMessage) => void;
    this.hello = new Promise((resolve) => {
      resolveHello = resolve;
    });
    socket.on("error", (error) => {
      this.#failure = error;
    });
    new MessageReader(socket, {
      onMessage: (value) => {
        const message = parseAppMessage(value);
        if (message.type === "hello") resolveHello(message);
        else if (message.type !== "log") this.#waiting.get(message.id)?.(message);
      },
      onViolation: (error) => {
        this.#failure = error;
        socket.destroy(error);
      },
    });
    socket.write(
      encodeFrame({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        role: "host",
        limits: {
          maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
          maxDepth: DEFAULT_MAX_DEPTH,
          maxValues: DEFAULT_MAX_VALUES,
        },
        capabilities: ["cancel", "ping"],
      }),
    );
  }

  request(payload: unknown, id: string): Promise<AppMessage> {
    const answer = new Promise<AppMessage>((resolve) => this.#waiting.set(id, resolve));
    this.#socket.write(encodeFrame({ type: "request", id, payload }));
    return within(
      answer,
      15_000,
      async () => `no answer to ${id} within 15 s (${this.#failure?.message ?? "no error"})`,
    );
  }
}

/** promise, or a rejection with describe()'s text after ms. */
async function within<T>(promise: Promise<T>, ms: number, describe: () => Promise<string>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void describe().then((text) => reject(new Error(text)));
    }, ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function removeImage(image: string): Promise<void> {
  await docker(["image", "rm", "-f", image]).catch(() => undefined);
}
