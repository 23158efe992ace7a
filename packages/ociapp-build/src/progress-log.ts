/** What a failed buildx build reports: the failing step, its error and its last output lines. */
export interface BuildFailure {
  step?: string;
  error: string;
  output: string;
}

/**
 * What buildx is doing, from its plain progress: a step (vertex) has started, or printed a status
 * line of its own (not the output of a command: "CACHED", "DONE 0.2s", "sending tarball 2.1s done").
 * `name` is the step's name as buildx prints it ("[stage-0 4/7] RUN ...", "exporting to oci image format").
 */
export type BuildxEvent = { type: "step"; name: string } | { type: "status"; name: string; text: string };

interface Vertex {
  name: string;
  lines: string[];
  error?: string;
}

const VERTEX_LINE = /^#(\d+) (.*)$/;
const TIMESTAMPED = /^\d+\.\d+ (.*)$/;
const MAX_VERTICES = 512;
const LINES_PER_VERTEX = 40;
const MAX_LINE = 2_000;

/**
 * Follows buildx's plain progress output (`#<n> <text>` lines per build step) keeping, with fixed
 * bounds, each step's name and its last output lines, so a failure can be reported as the step that
 * failed and what it printed rather than as the whole log.
 */
export class ProgressLog {
  readonly #vertices = new Map<string, Vertex>();
  readonly #onEvent: ((event: BuildxEvent) => void) | undefined;
  #partial = "";
  #lastError: string | undefined;

  /** `onEvent` hears each step start and status line, as the lines arrive. */
  constructor(onEvent?: (event: BuildxEvent) => void) {
    this.#onEvent = onEvent;
  }

  push(chunk: string): void {
    const text = this.#partial + chunk;
    const lines = text.split("\n");
    this.#partial = (lines.pop() ?? "").slice(-MAX_LINE);
    for (const line of lines) this.#line(line.slice(0, MAX_LINE));
  }

  failure(): BuildFailure {
    if (this.#partial) this.#line(this.#partial);
    this.#partial = "";
    let failed: Vertex | undefined;
    for (const vertex of this.#vertices.values()) if (vertex.error !== undefined) failed = vertex;
    if (failed) {
      return { step: failed.name, error: failed.error ?? "", output: failed.lines.join("\n") };
    }
    return { error: this.#lastError ?? "docker buildx build failed", output: "" };
  }

  #line(raw: string): void {
    const line = raw.replace(/\r$/, "");
    if (line.startsWith("ERROR:")) this.#lastError = line.slice("ERROR:".length).trim();
    const match = VERTEX_LINE.exec(line);
    if (!match) return;
    const [, id = "", rest = ""] = match;
    let vertex = this.#vertices.get(id);
    if (!vertex) {
      if (this.#vertices.size >= MAX_VERTICES) {
        const oldest = this.#vertices.keys().next().value;
        if (oldest !== undefined) this.#vertices.delete(oldest);
      }
      vertex = { name: rest, lines: [] };
      this.#vertices.set(id, vertex);
      this.#onEvent?.({ type: "step", name: rest });
      return;
    }
    if (rest.startsWith("ERROR: ")) {
      vertex.error = rest.slice("ERROR: ".length);
      return;
    }
    const output = TIMESTAMPED.exec(rest);
    if (output) {
      vertex.lines.push(output[1] ?? "");
      if (vertex.lines.length > LINES_PER_VERTEX) vertex.lines.shift();
    } else {
      this.#onEvent?.({ type: "status", name: vertex.name, text: rest });
    }
  }
}
