import type { FileHandle } from "node:fs/promises";
import { ArtifactFormatError } from "./errors.js";
import { ARTIFACT_LIMITS } from "./limits.js";
import { quote } from "./printable.js";

const BLOCK = 512;

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
    verifyChecksum(header, offset);

    const type = String.fromCharCode(header[156] ?? 0);
    const size = pending.size ?? parseSize(header, offset);
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
        type === "x" ? { ...pending, ...parsePax(body, offset) } : { ...pending, path: cString(body) };
      offset = next;
      continue;
    }
    if (type === "g" || type === "K") {
      // A global PAX header or a GNU long link name: nothing a reader of regular files needs.
      offset = next;
      continue;
    }

    const name = normalizeName(pending.path ?? headerName(header));
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

function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

function verifyChecksum(header: Buffer, offset: number): void {
  const stored = parseOctal(header.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    // The checksum field itself counts as eight spaces.
    const byte = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored === undefined || (stored !== unsigned && stored !== signed)) {
    throw new ArtifactFormatError(`bad tar header checksum at byte ${offset} (not a tar archive?)`);
  }
}

function parseSize(header: Buffer, offset: number): number {
  const field = header.subarray(124, 136);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    // GNU base-256: big-endian binary with the top bit as a marker (negative sizes are invalid).
    if (first & 0x40) throw new ArtifactFormatError(`negative tar entry size at byte ${offset}`);
    let value = BigInt(first & 0x3f);
    for (const byte of field.subarray(1)) value = (value << 8n) | BigInt(byte);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ArtifactFormatError(`tar entry size at byte ${offset} is out of range`);
    }
    return Number(value);
  }
  const size = parseOctal(field);
  if (size === undefined) throw new ArtifactFormatError(`invalid tar entry size at byte ${offset}`);
  return size;
}

/** Octal digits, optionally padded with leading spaces and ended by NUL or space; undefined if malformed. */
function parseOctal(field: Buffer): number | undefined {
  let value = 0;
  let digits = 0;
  let i = 0;
  while (i < field.length && field[i] === 0x20) i++;
  for (; i < field.length; i++) {
    const byte = field[i] ?? 0;
    if (byte === 0 || byte === 0x20) break;
    if (byte < 0x30 || byte > 0x37) return undefined;
    value = value * 8 + (byte - 0x30);
    digits++;
  }
  for (; i < field.length; i++) {
    const byte = field[i] ?? 0;
    if (byte !== 0 && byte !== 0x20) return undefined;
  }
  return digits === 0 ? 0 : value;
}

function headerName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  const isUstar = header.subarray(257, 262).toString("latin1") === "ustar";
  const prefix = isUstar ? cString(header.subarray(345, 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString("utf8");
}

function normalizeName(name: string): string {
  let normalized = name;
  while (normalized.startsWith("./")) normalized = normalized.slice(2);
  return normalized;
}

/** PAX records are "<length> <key>=<value>\n"; only path and size matter here. */
function parsePax(body: Buffer, headerOffset: number): { path?: string; size?: number } {
  const result: { path?: string; size?: number } = {};
  let position = 0;
  while (position < body.length) {
    const space = body.indexOf(0x20, position);
    if (space === -1) break;
    const length = Number(body.subarray(position, space).toString("latin1"));
    if (!Number.isSafeInteger(length) || length <= space - position || position + length > body.length) {
      throw new ArtifactFormatError(`malformed PAX header at byte ${headerOffset}`);
    }
    const record = body.subarray(space + 1, position + length - 1).toString("utf8");
    const equals = record.indexOf("=");
    if (equals > 0) {
      const key = record.slice(0, equals);
      const value = record.slice(equals + 1);
      if (key === "path") result.path = value;
      if (key === "size") {
        const size = Number(value);
        if (!/^\d+$/.test(value) || !Number.isSafeInteger(size)) {
          throw new ArtifactFormatError(`invalid PAX size at byte ${headerOffset}`);
        }
        result.size = size;
      }
    }
    position += length;
  }
  return result;
}
