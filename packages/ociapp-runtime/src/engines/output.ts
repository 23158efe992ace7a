/** Which of a container's standard streams a line came from. */
export type OutputStream = "stdout" | "stderr";

export interface OutputPipelineOptions {
  /** Complete lines of each stream kept for error reports (one ring per stream). Default 40. */
  maxLines?: number;
  /** Longest line kept, in bytes; a longer line is cut there and ends with "…". Default 4 096. */
  maxLineBytes?: number;
  /** Called for every line, in arrival order (the logs sink). Must not throw; see OutputPipeline. */
  onLine?: (stream: OutputStream, line: string) => void;
}

interface KeptLine {
  /** Arrival order over both streams. */
  seq: number;
  text: string;
}

/** The last lines of one stream. */
class Ring {
  readonly lines: KeptLine[] = [];
  /** Index of the oldest line once the ring is full. */
  head = 0;

  constructor(private readonly size: number) {}

  push(line: KeptLine): void {
    if (this.lines.length < this.size) {
      this.lines.push(line);
    } else {
      this.lines[this.head] = line;
      this.head = (this.head + 1) % this.size;
    }
  }

  /** Oldest first. */
  ordered(): KeptLine[] {
    return [...this.lines.slice(this.head), ...this.lines.slice(0, this.head)];
  }
}

const NEWLINE = 0x0a;

/**
 * A container's stdout and stderr for its whole life, read as lines. It is always drained (a
 * container blocked on a full pipe would hang), and whatever the container writes, it holds at most
 * `maxLines` lines of `maxLineBytes` per stream plus one partial line per stream: about 330 KiB with
 * the defaults. Lines go to `onLine` when one is set; the last `maxLines` of each stream are kept for
 * error reports (`InstanceStartupError.logs`, `WorkerExitedError.logs`). One ring per stream: the
 * engine copies stdout and stderr through separate pipes, so their order relative to each other is
 * not the order the app wrote them in, and a late flood on one stream must not push the other's last
 * lines (often the error) out of the report.
 *
 * With no `onLine`, a chunk holding many lines only turns its last `maxLines` into strings: a flood
 * of output costs a scan for newlines, not a string per line.
 */
export class OutputPipeline {
  private readonly maxLines: number;
  private readonly maxLineBytes: number;
  private readonly onLine: ((stream: OutputStream, line: string) => void) | undefined;
  private readonly rings: Record<OutputStream, Ring>;
  private seq = 0;
  private readonly partial: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  private readonly partialBytes: Record<OutputStream, number> = { stdout: 0, stderr: 0 };
  /** Lines seen, in all. */
  lineCount = 0;
  /** Bytes seen, in all. */
  byteCount = 0;
  private ended = false;

  constructor(options: OutputPipelineOptions = {}) {
    this.maxLines = options.maxLines ?? 40;
    this.maxLineBytes = options.maxLineBytes ?? 4_096;
    this.onLine = options.onLine;
    this.rings = { stdout: new Ring(this.maxLines), stderr: new Ring(this.maxLines) };
  }

  /** Takes one chunk of a stream's bytes. */
  push(stream: OutputStream, chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.byteCount += chunk.length;
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    if (newline < 0) {
      this.addPartial(stream, chunk);
      return;
    }
    // The first line completes whatever partial line the stream had.
    this.emit(stream, this.takePartial(stream, chunk.subarray(0, newline)));
    start = newline + 1;
    if (this.onLine === undefined) {
      // Only the last maxLines complete lines of the rest can be kept: skip to them.
      const last = chunk.lastIndexOf(NEWLINE);
      let cut = last;
      for (let kept = 0; kept < this.maxLines && cut > start; kept++) {
        cut = chunk.lastIndexOf(NEWLINE, cut - 1);
      }
      if (cut >= start) {
        this.lineCount += countNewlines(chunk, start, cut + 1);
        start = cut + 1;
      }
    }
    newline = chunk.indexOf(NEWLINE, start);
    while (newline >= 0) {
      this.emit(stream, this.cut(chunk.subarray(start, newline)));
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.addPartial(stream, chunk.subarray(start));
  }

  /** The streams ended (the container exited): partial lines count as lines. Idempotent. */
  end(): void {
    if (this.ended) return;
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partialBytes[stream] > 0) this.emit(stream, this.takePartial(stream, Buffer.alloc(0)));
    }
    this.ended = true;
  }

  /** The last lines of both streams, oldest first as they arrived, joined with "\n". */
  text(): string {
    const stdout = this.rings.stdout.ordered();
    const stderr = this.rings.stderr.ordered();
    const lines: string[] = [];
    let i = 0;
    let j = 0;
    while (i < stdout.length || j < stderr.length) {
      const a = stdout[i];
      const b = stderr[j];
      if (b === undefined || (a !== undefined && a.seq < b.seq)) {
        lines.push((a as KeptLine).text);
        i++;
      } else {
        lines.push(b.text);
        j++;
      }
    }
    return lines.join("\n");
  }

  private emit(stream: OutputStream, bytes: Buffer): void {
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    const text = bytes.toString("utf8", 0, end);
    this.lineCount++;
    this.rings[stream].push({ seq: this.seq++, text });
    this.onLine?.(stream, text);
  }

  private cut(line: Buffer): Buffer {
    if (line.length <= this.maxLineBytes) return line;
    return Buffer.concat([line.subarray(0, this.maxLineBytes), ELLIPSIS]);
  }

  private addPartial(stream: OutputStream, bytes: Buffer): void {
    const room = this.maxLineBytes - this.partialBytes[stream];
    if (room <= 0) return;
    // Copied: the chunk's memory belongs to the stream that delivered it.
    const kept = Buffer.from(bytes.subarray(0, room));
    this.partial[stream].push(kept);
    this.partialBytes[stream] += kept.length;
    if (bytes.length > room) this.partial[stream].push(ELLIPSIS);
  }

  private takePartial(stream: OutputStream, rest: Buffer): Buffer {
    if (this.partialBytes[stream] === 0) return this.cut(rest);
    const room = Math.max(0, this.maxLineBytes - this.partialBytes[stream]);
    const parts = this.partial[stream];
    if (parts.at(-1) !== ELLIPSIS) parts.push(rest.subarray(0, room));
    if (rest.length > room && parts.at(-1) !== ELLIPSIS) parts.push(ELLIPSIS);
    const line = Buffer.concat(parts);
    this.partial[stream] = [];
    this.partialBytes[stream] = 0;
    return line;
  }
}

const ELLIPSIS = Buffer.from("…");

function countNewlines(chunk: Buffer, from: number, to: number): number {
  let count = 0;
  for (let at = chunk.indexOf(NEWLINE, from); at >= 0 && at < to; at = chunk.indexOf(NEWLINE, at + 1)) {
    count++;
  }
  return count;
}
