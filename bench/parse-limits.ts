// Parsing what a container sends (issue "bounded parsing"): for frames the default limits allow
// (16 MiB, depth 64, 100,000 values), the event-loop stall of checking and parsing one, and the
// heap its parsed value holds; and what a frame the limits refuse costs (the scan alone).
// Run alone: node --expose-gc --conditions=source --import tsx bench/parse-limits.ts

import {
  checkJsonLimits,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  decodeJson,
} from "ociapp/protocol";

export interface ParseFigure {
  shape: string;
  bytes: number;
  /** ms the event loop is blocked: the limits scan plus JSON.parse (median of 3). */
  stallMs: number;
  /** MiB of heap the parsed value holds after gc (median of 3). */
  heapMiB: number;
  refused: boolean;
}

const limits = { maxDepth: DEFAULT_MAX_DEPTH, maxValues: DEFAULT_MAX_VALUES };
const VALUES = DEFAULT_MAX_VALUES - 10;

function response(payload: string): Buffer {
  return Buffer.from(`{"type":"response","id":"1","payload":${payload}}`);
}

/** Frames within the default limits (and two past them), as a container could send. */
function shapes(): [string, Buffer][] {
  const repeat = (item: string, count: number) => `[${new Array(count).fill(item).join(",")}]`;
  const fill = (item: string) =>
    Math.min(VALUES, Math.floor(DEFAULT_MAX_FRAME_BYTES / (item.length + 1)) - 64);
  const members = Array.from(
    { length: fill('"k0000000":0') },
    (_, i) => `"k${String(i).padStart(7, "0")}":0`,
  );
  const nested = (depth: number, leaf: string) => `${"[".repeat(depth)}${leaf}${"]".repeat(depth)}`;
  return [
    ["100k empty objects", response(repeat("{}", VALUES))],
    ["100k empty arrays", response(repeat("[]", VALUES))],
    ["100k numbers", response(repeat("1", VALUES))],
    ["100k short strings", response(repeat('"abcdefghijklm"', fill('"abcdefghijklm"')))],
    ["one object, 100k members", response(`{${members.join(",")}}`)],
    ["62 levels deep, 100k objects", response(nested(60, repeat("{}", VALUES - 62)))],
    ["one 16 MiB string", response(`"${"x".repeat(DEFAULT_MAX_FRAME_BYTES - 64)}"`)],
    ["refused: 8M levels deep", response(nested(4 * 1024 * 1024, "0"))],
    ["refused: 2M values", response(repeat("1", 2 * DEFAULT_MAX_VALUES))],
  ];
}

/** Parsed values, kept until their heap is measured. */
const held: unknown[] = [];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round((sorted[Math.floor(sorted.length / 2)] ?? Number.NaN) * 10) / 10;
}

export function measureParsing(log: (line: string) => void = () => undefined): ParseFigure[] {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc");
  const figures: ParseFigure[] = [];
  for (const [shape, body] of shapes()) {
    const stalls: number[] = [];
    const heaps: number[] = [];
    let refused = false;
    for (let round = 0; round < 3; round++) {
      gc();
      const before = process.memoryUsage().heapUsed;
      const started = performance.now();
      try {
        checkJsonLimits(body, limits);
        held.push(decodeJson(body, limits));
      } catch {
        refused = true;
      }
      stalls.push(performance.now() - started);
      gc();
      heaps.push((process.memoryUsage().heapUsed - before) / 1024 / 1024);
      held.length = 0;
    }
    const figure = { shape, bytes: body.length, stallMs: median(stalls), heapMiB: median(heaps), refused };
    log(`parsing: ${shape}: ${figure.stallMs} ms, ${figure.heapMiB} MiB${refused ? " (refused)" : ""}`);
    figures.push(figure);
  }
  return figures;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(
    JSON.stringify(
      measureParsing((line) => process.stderr.write(`[bench] ${line}\n`)),
      null,
      2,
    ),
  );
}
