import type { IncomingMessage } from "node:http";

/** Longest JSON line accepted from the engine's events or load progress streams. */
const MAX_ENGINE_LINE_BYTES = 256 * 1024;

/** Reads newline-delimited JSON from a stream of the engine's, each line bounded. */
export function onJsonLines(stream: NodeJS.ReadableStream, onLine: (value: unknown) => void): void {
  let pending = "";
  stream.on("data", (chunk: Buffer | string) => {
    pending += chunk.toString();
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) {
        try {
          onLine(JSON.parse(line));
        } catch {
          // The engine's own stream: a line that does not parse is skipped, not fatal.
        }
      }
      newline = pending.indexOf("\n");
    }
    if (pending.length > MAX_ENGINE_LINE_BYTES) pending = "";
  });
  // A last line without a newline (Podman's load answer) still counts.
  stream.on("end", () => {
    const line = pending.trim();
    pending = "";
    if (!line) return;
    try {
      onLine(JSON.parse(line));
    } catch {
      // as above
    }
  });
}

/** A long-lived response stream must not keep the host process alive by itself. */
export function unref(stream: unknown): void {
  (stream as IncomingMessage).socket?.unref();
}

/** Ends a response stream of the engine's (destroy is not on NodeJS.ReadableStream's type). */
export function destroy(stream: unknown): void {
  (stream as { destroy?: () => void }).destroy?.();
}

/**
 * Splits Docker's multiplexed attach stream (8-byte headers: stream type 1 stdout / 2 stderr, 3 zero
 * bytes, uint32 BE size) into payload bytes, without trusting the sizes for allocation.
 * Source: Docker Engine API, "Attach to a container" (stream format).
 */
export class AttachDemuxer {
  private readonly header = Buffer.alloc(8);
  private headerFill = 0;
  private remaining = 0;
  private stream: 1 | 2 = 1;

  constructor(private readonly onPayload: (stream: "stdout" | "stderr", chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.onPayload(this.stream === 2 ? "stderr" : "stdout", chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(8 - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill === 8) {
        this.stream = this.header[0] === 2 ? 2 : 1;
        this.remaining = this.header.readUInt32BE(4);
        this.headerFill = 0;
      }
    }
  }
}
