import { once } from "node:events";
import { createRequire } from "node:module";
import * as zlib from "node:zlib";
import { ZstdFormatError, ZstdFrameWalker } from "./zstd-frames.js";

/**
 * Measures what one blob of an artifact unpacks to, from its bytes as they stream by: gzip (zlib),
 * zstd (Node's zlib where it has zstd, Node >= 22.15; else fzstd, a pure-JS streaming decoder fed one
 * block at a time), anything else counted as is. The compression is recognised by its magic number,
 * as the engines do (containerd's and Docker's DecompressStream), not by the media type the manifest
 * claims. Decompressed bytes are counted and dropped; nothing is kept.
 */

/** Largest zstd window accepted on the fzstd path: its cost per block grows with the window. */
export const FZSTD_MAX_WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * Largest window with Node's zstd: its default (ZSTD_d_windowLogMax 27, the reference decoder's
 * limit without --long), stated for the walker that runs on both paths.
 */
const ZLIB_MAX_WINDOW_BYTES = 128 * 1024 * 1024;
/** How long the fzstd path decodes before it yields to the event loop. */
const FZSTD_SLICE_MS = 8;

export class BlobFormatError extends Error {}

/** Called with each count of unpacked bytes; throws to stop the measurement (the budget). */
export type UnpackedSink = (bytes: number) => void;

export interface BlobMeter {
  /** Resolves when the meter can take more (backpressure); rejects with the first failure. */
  write(chunk: Buffer): Promise<void>;
  /** Resolves once every byte written was measured. */
  end(): Promise<void>;
  destroy(): void;
}

const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

type ZstdDecompressFactory = (options?: zlib.ZlibOptions) => zlib.Gunzip;
/** zlib.createZstdDecompress where Node has it (>= 22.15, 23.8); @types/node 20 does not declare it. */
const zlibZstd = (zlib as unknown as { createZstdDecompress?: ZstdDecompressFactory }).createZstdDecompress;

/** Which zstd decoder this Node uses: "zlib" (native, off the main thread) or "fzstd". */
export const ZSTD_DECODER: "zlib" | "fzstd" = typeof zlibZstd === "function" ? "zlib" : "fzstd";

/** A meter that sniffs the first bytes, then hands everything to the right decoder. */
export function createBlobMeter(onUnpacked: UnpackedSink): BlobMeter {
  let head = Buffer.alloc(0);
  let inner: BlobMeter | undefined;
  const choose = (): BlobMeter => {
    if (startsWith(head, GZIP)) return streamMeter(zlib.createGunzip({ chunkSize: 64 * 1024 }), onUnpacked);
    if (startsWith(head, ZSTD)) {
      return zlibZstd
        ? walkedMeter(streamMeter(zlibZstd({ chunkSize: 64 * 1024 }), onUnpacked), ZLIB_MAX_WINDOW_BYTES)
        : fzstdMeter(onUnpacked);
    }
    return rawMeter(onUnpacked);
  };
  return {
    async write(chunk) {
      if (inner) return inner.write(chunk);
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      inner = choose();
      const first = head;
      head = Buffer.alloc(0);
      return inner.write(first);
    },
    async end() {
      if (!inner) {
        inner = rawMeter(onUnpacked);
        if (head.length > 0) await inner.write(head);
      }
      return inner.end();
    },
    destroy() {
      inner?.destroy();
    },
  };
}

function startsWith(buffer: Buffer, magic: number[]): boolean {
  return magic.every((byte, i) => buffer[i] === byte);
}

function rawMeter(onUnpacked: UnpackedSink): BlobMeter {
  return {
    async write(chunk) {
      onUnpacked(chunk.length);
    },
    async end() {},
    destroy() {},
  };
}

/** A zlib decompressor (it runs on libuv's thread pool); its output is counted and dropped. */
function streamMeter(decoder: zlib.Gunzip, onUnpacked: UnpackedSink): BlobMeter {
  let failure: Error | undefined;
  const fail = (error: Error) => {
    failure ??= error;
    decoder.destroy();
  };
  decoder.on("data", (chunk: Buffer) => {
    try {
      onUnpacked(chunk.length);
    } catch (error) {
      fail(error as Error);
    }
  });
  decoder.on("error", (error) => fail(new BlobFormatError(error.message)));
  const ended = new Promise<void>((resolve, reject) => {
    decoder.on("end", resolve);
    decoder.on("close", () => (failure ? reject(failure) : resolve()));
  });
  ended.catch(() => undefined);
  return {
    async write(chunk) {
      if (failure) throw failure;
      if (!decoder.write(chunk)) {
        await Promise.race([once(decoder, "drain"), ended]);
      }
      if (failure) throw failure;
    },
    async end() {
      if (failure) throw failure;
      decoder.end();
      await ended;
      if (failure) throw failure;
    },
    destroy() {
      decoder.destroy();
    },
  };
}

/** Runs the frame walker beside another zstd meter: the same window and format checks on both paths. */
function walkedMeter(inner: BlobMeter, maxWindowBytes: number): BlobMeter {
  const walker = new ZstdFrameWalker(maxWindowBytes);
  return {
    async write(chunk) {
      walk(() => walker.push(chunk));
      return inner.write(chunk);
    },
    async end() {
      walk(() => walker.end());
      return inner.end();
    },
    destroy: () => inner.destroy(),
  };
}

function walk<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    if (error instanceof ZstdFormatError) throw new BlobFormatError(error.message);
    throw error;
  }
}

interface FzstdDecompress {
  push(chunk: Uint8Array, final?: boolean): void;
}
type FzstdModule = { Decompress: new (ondata: (data: Uint8Array) => void) => FzstdDecompress };
let fzstd: FzstdModule | undefined;

/**
 * fzstd on the main thread, made safe: the walker refuses windows over FZSTD_MAX_WINDOW_BYTES before
 * fzstd allocates them, and cuts the input at block ends, so each push decodes at most one block
 * (128 KiB out); the meter yields to the event loop every FZSTD_SLICE_MS.
 */
function fzstdMeter(onUnpacked: UnpackedSink): BlobMeter {
  // Loaded only on this path (Node without zlib zstd): CommonJS, so through require.
  fzstd ??= createRequire(import.meta.url)("fzstd") as FzstdModule;
  const walker = new ZstdFrameWalker(FZSTD_MAX_WINDOW_BYTES);
  let failure: Error | undefined;
  const decoder = new fzstd.Decompress((data) => {
    if (failure) return;
    try {
      onUnpacked(data.length);
    } catch (error) {
      failure = error as Error;
    }
  });
  let sliceStart = performance.now();
  const push = (bytes: Uint8Array, final = false) => {
    try {
      decoder.push(bytes, final);
    } catch (error) {
      // fzstd's own errors carry a numeric code (ZstdErrorCode).
      if (typeof (error as { code?: unknown }).code === "number") {
        throw new BlobFormatError(`zstd: ${(error as Error).message}`);
      }
      throw error;
    }
    if (failure) throw failure;
  };
  return {
    async write(chunk) {
      if (failure) throw failure;
      try {
        const cuts = walk(() => walker.push(chunk));
        let start = 0;
        for (const cut of cuts) {
          push(chunk.subarray(start, cut));
          start = cut;
          if (performance.now() - sliceStart >= FZSTD_SLICE_MS) {
            await new Promise((resolve) => setImmediate(resolve));
            sliceStart = performance.now();
          }
        }
        if (start < chunk.length) push(chunk.subarray(start));
      } catch (error) {
        failure = error as Error;
        throw failure;
      }
    },
    async end() {
      if (failure) throw failure;
      walk(() => walker.end());
      push(new Uint8Array(0), true);
    },
    destroy() {
      failure ??= new Error("destroyed");
    },
  };
}
