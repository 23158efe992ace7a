import type { FileHandle } from "node:fs/promises";
import { ArtifactFormatError } from "./errors.js";
import { ARTIFACT_LIMITS } from "./limits.js";
import { quote } from "./printable.js";
import {
  cString,
  headerName,
  isZeroBlock,
  normalizeName,
  parsePax,
  parseSize,
  TAR_BLOCK,
  TarHeaderError,
  verifyChecksum,
} from "./tar-header.js";

const BLOCK = TAR_BLOCK;

/** Where one regular file's body lies inside the tarball. */
export interface TarEntry {
  name: string;
  /** byte offset of the body in the file */
  offset: number;
  size: number;
}

/**
 * Lists the regular files of a tar archive by walking its 512-byte headers with positional reads and
 * skipping every body, so a multi-gigabyte image layout costs one small read per entry. buildx writes
 * index.json last, which is why a streaming reader would have to pass over every layer to find it.
 *
 * Understands ustar (with prefix), PAX extended headers (path, size) and GNU long names, which covers
 * what buildx, containerd, docker save and GNU/BSD tar produce.
 */
export async function listTarEntries(
  handle: FileHandle,
  fileSize: number,
  signal?: AbortSignal,
): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const headers = new HeaderWindow(handle, fileSize);
  let offset = 0;
  let count = 0;
  let pending: { path?: string; size?: number } = {};

  for (;;) {
    signal?.throwIfAborted();
    if (offset === fileSize) break; // archives without the two-zero-block trailer end here
    if (offset + BLOCK > fileSize) throw new ArtifactFormatError(`truncated tar header at byte ${offset}`);
    const header = await headers.at(offset);
    if (isZeroBlock(header)) break;
    if (++count > ARTIFACT_LIMITS.maxEntries) {
      throw new ArtifactFormatError(`more than ${ARTIFACT_LIMITS.maxEntries} tar entries`);
    }
    field(offset, () => verifyChecksum(header));

    const type = String.fromCharCode(header[156] ?? 0);
    const size = pending.size ?? field(offset, () => parseSize(header));
    const bodyOffset = offset + BLOCK;
    const next = bodyOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (bodyOffset + size > fileSize) {
      throw new ArtifactFormatError(
        `tar entry at byte ${offset} declares ${size} bytes past the end of the file`,
      );
    }

    if (type === "x" || type === "L") {
      const body = await readExtendedBody(handle, bodyOffset, size, offset);
      pending =
        type === "x"
          ? { ...pending, ...field(offset, () => parsePax(body)) }
          : { ...pending, path: normalizeName(cString(body)) };
      offset = next;
      continue;
    }
    if (type === "g" || type === "K") {
      // A global PAX header or a GNU long link name: nothing a reader of regular files needs.
      offset = next;
      continue;
    }

    const name = pending.path ?? headerName(header);
    pending = {};
    if (type === "0" || type === "\0" || type === "7") {
      if (entries.has(name)) throw new ArtifactFormatError(`duplicate tar entry ${quote(name)}`);
      entries.set(name, { name, offset: bodyOffset, size });
    }
    offset = next;
  }
  return entries;
}

/**
 * Serves 512-byte headers from a 64 KiB window, so runs of small entries (directories, JSON blobs)
 * cost one read between them rather than one each; a header past a large body starts a new window.
 */
class HeaderWindow {
  readonly #handle: FileHandle;
  readonly #fileSize: number;
  readonly #buffer = Buffer.alloc(64 * 1024);
  #start = 0;
  #length = 0;

  constructor(handle: FileHandle, fileSize: number) {
    this.#handle = handle;
    this.#fileSize = fileSize;
  }

  async at(offset: number): Promise<Buffer> {
    if (offset < this.#start || offset + BLOCK > this.#start + this.#length) {
      const length = Math.min(this.#buffer.length, this.#fileSize - offset);
      await readFully(this.#handle, this.#buffer.subarray(0, length), offset);
      this.#start = offset;
      this.#length = length;
    }
    const from = offset - this.#start;
    return this.#buffer.subarray(from, from + BLOCK);
  }
}

/** Reads one entry's body, which the caller has bounded already. */
export async function readEntry(handle: FileHandle, entry: TarEntry): Promise<Buffer> {
  const body = Buffer.alloc(entry.size);
  await readFully(handle, body, entry.offset);
  return body;
}

async function readFully(handle: FileHandle, target: Buffer, position: number): Promise<void> {
  let filled = 0;
  while (filled < target.length) {
    const { bytesRead } = await handle.read(target, filled, target.length - filled, position + filled);
    if (bytesRead === 0) throw new ArtifactFormatError(`unexpected end of file at byte ${position + filled}`);
    filled += bytesRead;
  }
}

async function readExtendedBody(
  handle: FileHandle,
  offset: number,
  size: number,
  headerOffset: number,
): Promise<Buffer> {
  if (size > ARTIFACT_LIMITS.maxExtendedHeaderBytes) {
    throw new ArtifactFormatError(
      `tar extended header at byte ${headerOffset} is ${size} bytes, over the limit`,
    );
  }
  const body = Buffer.alloc(size);
  await readFully(handle, body, offset);
  return body;
}

/** A header field read at `offset`, its TarHeaderError as this reader's ArtifactFormatError. */
function field<T>(offset: number, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof TarHeaderError) {
      const hint = error.hint === undefined ? "" : ` (${error.hint})`;
      throw new ArtifactFormatError(`${error.message} at byte ${offset}${hint}`);
    }
    throw error;
  }
}
