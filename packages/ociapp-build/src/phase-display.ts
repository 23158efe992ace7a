import { type BuildPhase, describePhase } from "./phases.js";

/** Where the display writes: the CLI's stderr (a TTY has isTTY, and columns when known). */
export interface DisplayStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Carriage return, then erase the whole line (ECMA-48 EL 2): the line is redrawn in place. */
const REDRAW = "\r\x1b[2K";

/**
 * Shows a build's phases (`onPhase`) to a person.
 *
 * - On a terminal (`tty`): one line, redrawn in place (carriage return and erase-line, nothing else:
 *   no cursor movement, no colours), "ociapp-build: <phase> (<seconds> s)", cut to the terminal's
 *   width so it never wraps (a wrapped line cannot be redrawn with a carriage return). The seconds
 *   since the build started tick every second; `clear()` erases the line before the result or an
 *   error is printed.
 * - Elsewhere: "[ociapp-build] <phase>" once per phase (a phase repeated, or the bytes written
 *   growing, print nothing new), so a CI log gets a handful of lines.
 *
 * Hand-rolled rather than a progress library: one line and two escape sequences are the whole job,
 * where log-update and its like bring several dependencies for multi-line redraws this does not do.
 */
export class PhaseDisplay {
  readonly #stream: DisplayStream;
  readonly #tty: boolean;
  readonly #started: number;
  #text: string | undefined;
  #ticker: NodeJS.Timeout | undefined;

  constructor(stream: DisplayStream, options: { tty?: boolean } = {}) {
    this.#stream = stream;
    this.#tty = options.tty ?? stream.isTTY === true;
    this.#started = performance.now();
  }

  update(phase: BuildPhase): void {
    const text = describePhase(phase);
    if (this.#tty) {
      this.#text = text;
      this.#draw();
      if (!this.#ticker) {
        this.#ticker = setInterval(() => this.#draw(), 1_000);
        this.#ticker.unref();
      }
      return;
    }
    // One line per phase: the growing byte count is one phase.
    const key = phase.phase === "writing" ? "writing the artifact" : text;
    if (key === this.#text) return;
    this.#text = key;
    this.#stream.write(`[ociapp-build] ${key}\n`);
  }

  /** Stops the ticker and, on a terminal, erases the line. Idempotent. */
  clear(): void {
    clearInterval(this.#ticker);
    this.#ticker = undefined;
    if (this.#tty && this.#text !== undefined) this.#stream.write(REDRAW);
    this.#text = undefined;
  }

  #draw(): void {
    if (this.#text === undefined) return;
    const seconds = Math.floor((performance.now() - this.#started) / 1000);
    const line = `ociapp-build: ${this.#text} (${seconds} s)`;
    const width = Math.max(20, (this.#stream.columns || 80) - 1);
    this.#stream.write(`${REDRAW}${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
  }
}
