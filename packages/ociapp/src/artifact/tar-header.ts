/**
 * The ustar/pax header fields the artifact readers need (POSIX.1-2001 pax format; GNU base-256
 * sizes), over one 512-byte block, trusting nothing: every function throws TarHeaderError, which each
 * reader turns into its own error (an ArtifactFormatError with the offset; an upload's refusal).
 */
export const TAR_BLOCK = 512;

/** A malformed header: the message says which field; `hint` what it may mean ("not a tar archive?"). */
export class TarHeaderError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

/** The stored checksum against both the unsigned and the signed sum (old tars used signed bytes). */
export function verifyChecksum(header: Buffer): void {
  const stored = parseOctal(header.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    // The checksum field itself counts as eight spaces.
    const byte = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored === undefined || (stored !== unsigned && stored !== signed)) {
    throw new TarHeaderError("bad tar header checksum", "not a tar archive?");
  }
}

/** The entry's size: octal, or GNU base-256 (big-endian binary with the top bit as a marker). */
export function parseSize(header: Buffer): number {
  const field = header.subarray(124, 136);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first & 0x40) throw new TarHeaderError("negative tar entry size");
    let value = BigInt(first & 0x3f);
    for (const byte of field.subarray(1)) value = (value << 8n) | BigInt(byte);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarHeaderError("tar entry size out of range");
    return Number(value);
  }
  const size = parseOctal(field);
  if (size === undefined) throw new TarHeaderError("invalid tar entry size");
  return size;
}

/** Octal digits, optionally padded with leading spaces and ended by NUL or space; undefined if malformed. */
export function parseOctal(field: Buffer): number | undefined {
  let value = 0;
  let i = 0;
  while (i < field.length && field[i] === 0x20) i++;
  for (; i < field.length; i++) {
    const byte = field[i] ?? 0;
    if (byte === 0 || byte === 0x20) break;
    if (byte < 0x30 || byte > 0x37) return undefined;
    value = value * 8 + (byte - 0x30);
  }
  for (; i < field.length; i++) {
    const byte = field[i] ?? 0;
    if (byte !== 0 && byte !== 0x20) return undefined;
  }
  return value;
}

/** name, with ustar's prefix field before it; leading "./" removed. */
export function headerName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  const isUstar = header.subarray(257, 262).toString("latin1") === "ustar";
  const prefix = isUstar ? cString(header.subarray(345, 500)) : "";
  return normalizeName(prefix ? `${prefix}/${name}` : name);
}

/** A NUL-terminated string field (also a GNU long name's body). */
export function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString("utf8");
}

export function normalizeName(name: string): string {
  let normalized = name;
  while (normalized.startsWith("./")) normalized = normalized.slice(2);
  return normalized;
}

/** PAX records are "<length> <key>=<value>\n"; only path and size matter here. */
export function parsePax(body: Buffer): { path?: string; size?: number } {
  const result: { path?: string; size?: number } = {};
  let position = 0;
  while (position < body.length) {
    const space = body.indexOf(0x20, position);
    if (space === -1) break;
    const length = Number(body.subarray(position, space).toString("latin1"));
    if (!Number.isSafeInteger(length) || length <= space - position || position + length > body.length) {
      throw new TarHeaderError("malformed PAX header");
    }
    const record = body.subarray(space + 1, position + length - 1).toString("utf8");
    const equals = record.indexOf("=");
    if (equals > 0) {
      const key = record.slice(0, equals);
      const value = record.slice(equals + 1);
      if (key === "path") result.path = normalizeName(value);
      if (key === "size") {
        if (!/^\d{1,15}$/.test(value)) throw new TarHeaderError("invalid PAX size");
        result.size = Number(value);
      }
    }
    position += length;
  }
  return result;
}
