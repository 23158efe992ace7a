import { chmod, lstat, mkdir, rename, unlink } from "node:fs/promises";
import { connect, type Server } from "node:net";
import { basename, dirname, join } from "node:path";
import { OciappUsageError } from "../errors.js";

const PROBE_TIMEOUT_MS = 1000;

/** true when something accepts connections on the socket file at path. */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const timer = setTimeout(() => finish(true), PROBE_TIMEOUT_MS);
    timer.unref();
    function finish(live: boolean): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(live);
    }
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/** Makes way for a new socket at path: creates its folder and removes a stale socket file. */
async function clearSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  if (!stats.isSocket()) {
    throw new OciappUsageError("OCIAPP_SOCKET_PATH", `socket path ${path} exists and is not a socket`);
  }
  if (await isListening(path)) {
    throw new OciappUsageError("OCIAPP_SOCKET_IN_USE", `socket path ${path} is in use by a running server`);
  }
  await unlink(path);
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.removeListener("listening", onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.removeListener("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(path);
  });
}

/** The bound socket file; remove() deletes it only if it is still the one this process made. */
export interface BoundSocket {
  readonly path: string;
  remove(): Promise<void>;
}

let sequence = 0;

/**
 * Binds server at path so that the file appears only when it is listening and connectable by
 * anyone (0666): it is bound under a temporary name in the same folder, chmod-ed, then renamed into
 * place. A client that sees the file can connect at once, whatever its uid.
 */
export async function bindSocket(server: Server, path: string): Promise<BoundSocket> {
  await clearSocketPath(path);
  const temporary = join(dirname(path), `.${basename(path).slice(0, 16)}.${process.pid}.${++sequence}.tmp`);
  await unlink(temporary).catch(() => undefined);
  try {
    await listen(server, temporary);
  } catch (error) {
    throw new OciappUsageError(
      "OCIAPP_SOCKET_BIND",
      `cannot listen on ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  try {
    await chmod(temporary, 0o666);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    server.close();
    throw new OciappUsageError(
      "OCIAPP_SOCKET_BIND",
      `cannot publish socket ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const { ino, dev } = await lstat(path);
  return {
    path,
    async remove() {
      try {
        const current = await lstat(path);
        if (current.ino === ino && current.dev === dev) await unlink(path);
      } catch {
        // Already gone.
      }
    },
  };
}
