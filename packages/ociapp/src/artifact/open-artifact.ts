import { constants, type ReadStream, type Stats } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import { ArtifactFileError, type ArtifactFileReason } from "./errors.js";

export interface OpenArtifactOptions {
  /** checked before and after each file-system step; an aborted signal rejects with its reason */
  signal?: AbortSignal;
}

export interface OpenArtifactStreamOptions extends OpenArtifactOptions {
  /** bytes per chunk; Node's default for file streams (64 KiB) when unset */
  highWaterMark?: number;
}

/**
 * open(2) flags for an artifact. O_NONBLOCK: POSIX opens a FIFO for reading at once with it (without,
 * open blocks until a writer comes, and a Node thread-pool thread blocks with it, forever); a read of
 * a regular file ignores it (Linux, the BSDs and macOS read regular files the same either way), so the
 * handle reads as any other. O_NOCTTY: opening a terminal must not make it the process's controlling
 * terminal. Platforms without a flag (Windows) get 0 for it.
 */
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/**
 * Stats an artifact path (following symbolic links) and refuses anything but a regular file, without
 * opening it: for identity checks (device, inode, size, mtime) on a warm path. stat(2) never blocks on
 * a FIFO or a device. Rejects with ArtifactFileError (`missing`, `not-regular`, `unreadable`).
 */
export async function statArtifact(path: string, options: OpenArtifactOptions = {}): Promise<Stats> {
  options.signal?.throwIfAborted();
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch (error) {
    throw fileError(path, error);
  }
  options.signal?.throwIfAborted();
  requireRegular(path, stats);
  return stats;
}

/**
 * Opens an artifact for reading, only as a regular file, and never blocks: a FIFO, a socket, a
 * character or block device (`/dev/zero`, `/dev/stdin`), a directory or a path that vanishes is an
 * ArtifactFileError at once. Symbolic links are followed; what counts is the file they lead to.
 *
 * 1. stat(2) the path and refuse a non-regular file without opening it: opening a device can have
 *    effects of its own (a tape rewinds, a watchdog arms) and opening a FIFO wakes a writer blocked in
 *    its own open.
 * 2. open(2) it with O_RDONLY | O_NONBLOCK | O_NOCTTY, then fstat(2) the handle and refuse anything but
 *    a regular file: the path may have been swapped for a FIFO or a device between 1 and 2, and
 *    O_NONBLOCK makes that open return at once (a socket fails it with ENXIO).
 *
 * Read the artifact only through the returned handle, never by opening the path again: the file
 * behind the path may change at any moment. The caller closes the handle.
 * Rejects with ArtifactFileError, or the signal's reason.
 */
export async function openArtifact(path: string, options: OpenArtifactOptions = {}): Promise<FileHandle> {
  return openRegularFile(path, options);
}

/**
 * A stream of the artifact's bytes, from {@link openArtifact}'s handle (so with the same checks; the
 * path is not opened again). The stream owns the handle: it is closed when the stream ends, fails or
 * is destroyed; destroy the stream to stop early. For `docker load` and any other consumer of the
 * whole file. Rejects with ArtifactFileError, or the signal's reason.
 */
export async function openArtifactStream(
  path: string,
  options: OpenArtifactStreamOptions = {},
): Promise<ReadStream> {
  const handle = await openArtifact(path, options);
  return handle.createReadStream({
    autoClose: true,
    ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
  });
}

/**
 * openArtifact's steps with a hook between the stat and the open, so that tests can swap the file
 * there (a file replaced by a FIFO after it was checked). Not exported from ociapp/artifact.
 */
export async function openRegularFile(
  path: string,
  options: OpenArtifactOptions,
  afterStat?: () => Promise<void>,
): Promise<FileHandle> {
  await statArtifact(path, options);
  await afterStat?.();
  let handle: FileHandle;
  try {
    handle = await open(path, OPEN_FLAGS);
  } catch (error) {
    throw fileError(path, error);
  }
  try {
    options.signal?.throwIfAborted();
    requireRegular(path, await handle.stat());
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function requireRegular(path: string, stats: Stats): void {
  if (!stats.isFile()) {
    throw new ArtifactFileError(path, "not-regular", `it is ${fileType(stats)}, not a regular file`);
  }
}

function fileType(stats: Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  return "an unknown kind of file";
}

const ERRNO: Record<string, [ArtifactFileReason, string]> = {
  ENOENT: ["missing", "no such file"],
  ENOTDIR: ["missing", "a component of the path is not a folder"],
  // open(2) of a Unix socket: only reachable when the path became one after the stat.
  ENXIO: ["not-regular", "it is a socket or a device without a driver, not a regular file"],
  EACCES: ["unreadable", "permission denied"],
  EPERM: ["unreadable", "permission denied"],
  ELOOP: ["unreadable", "too many levels of symbolic links"],
  ENAMETOOLONG: ["unreadable", "the path is too long"],
};

function fileError(path: string, error: unknown): ArtifactFileError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const known = typeof code === "string" ? ERRNO[code] : undefined;
  if (known) return new ArtifactFileError(path, known[0], known[1], { cause: error });
  const why = typeof code === "string" ? code : String((error as Error | undefined)?.message ?? error);
  return new ArtifactFileError(path, "unreadable", why, { cause: error });
}
