import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { tarHeader } from "ociapp/artifact";
import { DigestMismatchError } from "../errors.js";

const {
  TAR_BLOCK: BLOCK,
  TarHeaderError,
  cString,
  headerName,
  isZeroBlock,
  parsePax,
  parseSize,
  verifyChecksum,
} = tarHeader;
const MAX_ENTRIES = 65_536;
const MAX_EXTENDED = 64 * 1024;
const BLOB = /^blobs\/sha256\/([a-f0-9]{64})$/;

/** Why an upload is refused while it streams: a malformed tar, or a blob whose bytes are not its name's. */
export class UploadRejected extends Error {}

/**
 * Passes an uploaded .ociapp through unchanged while it walks the tar (POSIX ustar, PAX `x` and GNU
 * `L` headers, as ociapp/artifact's reader does) and hashes every `blobs/sha256/<hex>` entry as its
 * bytes go by: a blob whose sha256 is not its name fails the stream with DigestMismatchError at the
 * end of that blob, long before the upload ends. Only regular files, folders and the extended
 * headers are accepted (no links or devices: nothing an engine's loader could follow). So once the
 * stream has ended, every blob the manifest names has been verified, and the manifest's own digest
 * (checked afterwards with readArtifactIndex) covers the whole artifact.
 */
export class TarBlobVerifier extends Transform {
  /** Blobs seen, each verified. */
  readonly blobs = new Set<string>();
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes of the current entry's body (and padding) still to pass. */
  private bodyLeft = 0;
  private padLeft = 0;
  private hash: Hash | undefined;
  private hashName = "";
  private extended: { type: string; chunks: Buffer[]; size: number } | undefined;
  private pending: { path?: string; size?: number } = {};
  private entries = 0;
  private ended = false;

  constructor(private readonly digest: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.walk(chunk);
    } catch (error) {
      // A malformed header is the upload's fault: the agent answers it as a refusal.
      if (error instanceof TarHeaderError) {
        const hint = error.hint === undefined ? "" : ` (${error.hint})`;
        callback(new UploadRejected(`${error.message}${hint}`));
      } else callback(error as Error);
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.bodyLeft > 0 || this.headerFill !== 0 || this.extended) {
      callback(new UploadRejected("the upload ended inside a tar entry"));
      return;
    }
    callback();
  }

  private walk(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.ended) return; // bytes after the end-of-archive blocks are ignored, as tar does
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - at);
        const part = chunk.subarray(at, at + take);
        this.hash?.update(part);
        if (this.extended) this.extended.chunks.push(Buffer.from(part));
        this.bodyLeft -= take;
        at += take;
        if (this.bodyLeft === 0) this.endBody();
        continue;
      }
      if (this.padLeft > 0) {
        const take = Math.min(this.padLeft, chunk.length - at);
        this.padLeft -= take;
        at += take;
        continue;
      }
      const take = Math.min(BLOCK - this.headerFill, chunk.length - at);
      chunk.copy(this.header, this.headerFill, at, at + take);
      this.headerFill += take;
      at += take;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        this.onHeader(this.header);
      }
    }
  }

  private onHeader(header: Buffer): void {
    if (isZeroBlock(header)) {
      this.ended = true;
      return;
    }
    if (++this.entries > MAX_ENTRIES) throw new UploadRejected(`more than ${MAX_ENTRIES} tar entries`);
    verifyChecksum(header);
    const type = String.fromCharCode(header[156] ?? 0);
    const size = this.pending.size ?? parseSize(header);
    this.bodyLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === "x" || type === "L" || type === "g") {
      if (size > MAX_EXTENDED) throw new UploadRejected(`a tar extended header of ${size} bytes`);
      this.extended = { type, chunks: [], size };
      if (size === 0) this.endBody();
      return;
    }
    const name = this.pending.path ?? headerName(header);
    this.pending = {};
    if (type === "5") {
      if (size !== 0) throw new UploadRejected(`folder ${JSON.stringify(name)} has a body`);
      return;
    }
    if (type !== "0" && type !== "\0" && type !== "7") {
      throw new UploadRejected(
        `tar entry ${JSON.stringify(name.slice(0, 200))} is not a regular file or folder`,
      );
    }
    const blob = BLOB.exec(name);
    if (blob) {
      this.hash = createHash("sha256");
      this.hashName = blob[1] as string;
    }
    if (size === 0) this.endBody();
  }

  private endBody(): void {
    if (this.extended) {
      const { type, chunks } = this.extended;
      const body = Buffer.concat(chunks);
      this.extended = undefined;
      if (type === "x") this.pending = { ...this.pending, ...parsePax(body) };
      else if (type === "L") this.pending = { ...this.pending, path: cString(body) };
      return;
    }
    if (this.hash) {
      const actual = this.hash.digest("hex");
      const expected = this.hashName;
      this.hash = undefined;
      if (actual !== expected) {
        throw new DigestMismatchError(
          this.digest,
          `the upload's blob sha256:${expected.slice(0, 12)}... does not match its content (sha256:${actual.slice(0, 12)}...)`,
        );
      }
      if (this.blobs.has(expected)) throw new UploadRejected(`blob sha256:${expected} twice in the upload`);
      this.blobs.add(expected);
    }
  }
}
