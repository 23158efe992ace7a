import { chmod, lstat, mkdir, rename, stat, unlink } from "node:fs/promises";
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

/** The reason of a failed file-system call, without the call and the path Node appends to it. */
function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/, \w+ '.*'$/s, "");
}

function socketPathError(path: string, what: string, error: unknown): OciappUsageError {
  return new OciappUsageError(
    "OCIAPP_SOCKET_PATH",
    `cannot use socket path ${path}: ${what}: ${reason(error)}`,
    {
      cause: error,
    },
  );
}

/**
 * mkdir -p, by hand: Node 20's recursive mkdir never settles for a folder that cannot exist, such as
 * one under /proc (it retries ENOENT forever). Here each level is tried once.
 */
async function ensureFolder(folder: string): Promise<void> {
  try {
    await mkdir(folder);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      if ((await stat(folder)).isDirectory()) return;
      throw error;
    }
    const parent = dirname(folder);
    if (code !== "ENOENT" || parent === folder) throw error;
  }
  await ensureFolder(dirname(folder));
  await mkdir(folder).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") throw error;
  });
}

/** Makes way for a new socket at path: creates its folder and removes a stale socket file. */
async function clearSocketPath(path: string): Promise<void> {
  const folder = dirname(path);
  try {
    await ensureFolder(folder);
  } catch (error) {
    throw socketPathError(path, `cannot create its folder ${folder}`, error);
  }
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw socketPathError(path, "cannot inspect it", error);
  }
  if (!stats.isSocket()) {
    throw new OciappUsageError("OCIAPP_SOCKET_PATH", `socket path ${path} exists and is not a socket`);
  }
  if (await isListening(path)) {
    throw new OciappUsageError("OCIAPP_SOCKET_IN_USE", `socket path ${path} is in use by a running server`);
  }
  try {
    await unlink(path);
  } catch (error) {
    throw socketPathError(path, "cannot remove the stale socket", error);
  }
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
