import { stat } from "node:fs/promises";
import { printable } from "ociapp/artifact";
import { CHECK_STEP } from "./buildx.js";
import { formatBytes } from "./format.js";
import type { BuildxEvent } from "./progress-log.js";

/**
 * Where a build is, for a person watching it (`onPhase`; the CLI's one updating line):
 *
 * | phase | when |
 * |---|---|
 * | `script` | the app's build script runs on the host (npm run build) |
 * | `staging` | the SDK is packed and the build context assembled |
 * | `reused` | the artifact's build context is unchanged: it is reused, buildx does not run |
 * | `base` | buildx loads the base image and the context |
 * | `system-packages` | apt-get installs `systemPackages` |
 * | `toolchain` | apt-get installs the compiler, Python and make (native modules only) |
 * | `installing` | npm installs the production dependencies (`native`: and compiles them) |
 * | `copying` | the dependencies or the app's files are copied into the image |
 * | `checking` | `ociapp check` loads the entrypoint in the image |
 * | `step` | any other step of the build (custom mode): `step` is buildx's name for it |
 * | `exporting` | buildx compresses the layers |
 * | `writing` | buildx writes the artifact: `bytes` so far, `expectedBytes` the previous artifact's size when there is one |
 */
export type BuildPhase =
  | {
      phase:
        | "script"
        | "staging"
        | "reused"
        | "base"
        | "system-packages"
        | "toolchain"
        | "copying"
        | "checking"
        | "exporting";
    }
  | { phase: "installing"; native: boolean }
  | { phase: "step"; step: string }
  | { phase: "writing"; bytes: number; expectedBytes?: number };

const STEP = /^\[(?<stage>[^\]\s]+ )?(?<index>\d+)\/(?<total>\d+)\] (?<instruction>.*)$/s;

/**
 * The phase a buildx event starts, or undefined when it starts none (buildx's internal steps, status
 * lines other than the tarball's). Knows the steps of the managed Containerfile; any other step is a
 * `step` phase.
 */
export function phaseOf(event: BuildxEvent): BuildPhase | undefined {
  if (event.type === "status") {
    // "sending tarball" starts the writing; "sending tarball 1.7s done" ends it.
    return event.name.startsWith("exporting to ") && event.text === "sending tarball"
      ? { phase: "writing", bytes: 0 }
      : undefined;
  }
  const { name } = event;
  if (name.startsWith("exporting to ")) return { phase: "exporting" };
  if (name.startsWith("[internal]") || name.startsWith("[context ")) return { phase: "base" };
  const instruction = STEP.exec(name)?.groups?.instruction;
  if (instruction === undefined) return undefined;
  if (instruction.startsWith("FROM ") || instruction.startsWith("WORKDIR ")) return { phase: "base" };
  if (CHECK_STEP.test(instruction)) return { phase: "checking" };
  if (instruction.startsWith("RUN apt-get update")) {
    return instruction.includes("python3 make g++") ? { phase: "toolchain" } : { phase: "system-packages" };
  }
  if (instruction.startsWith("RUN ") && instruction.includes("npm install")) {
    return { phase: "installing", native: instruction.includes("npm_config_nodedir") };
  }
  if (instruction.startsWith("COPY ")) return { phase: "copying" };
  return { phase: "step", step: instruction };
}

/** The phase in words, for a line on a terminal: printable (a custom step is the project's text). */
export function describePhase(event: BuildPhase): string {
  switch (event.phase) {
    case "script":
      return "running the app's build script (npm run build)";
    case "staging":
      return "staging the build context";
    case "reused":
      return "build context unchanged: reusing the artifact";
    case "base":
      return "loading the base image and the context";
    case "system-packages":
      return "installing system packages (apt-get)";
    case "toolchain":
      return "installing the compiler for native modules (apt-get)";
    case "installing":
      return event.native
        ? "installing and compiling dependencies (npm install)"
        : "installing dependencies (npm install)";
    case "copying":
      return "copying files into the image";
    case "checking":
      return "checking the app's entrypoint (ociapp check)";
    case "step":
      return `building: ${printable(event.step)}`;
    case "exporting":
      return "exporting the image";
    case "writing":
      return event.expectedBytes === undefined
        ? `writing ${formatBytes(event.bytes)}`
        : `writing ${formatBytes(event.bytes)} of ~${formatBytes(event.expectedBytes)}`;
  }
}

/**
 * Reports the size of the file buildx is writing, every `intervalMs` (500 by default) from start()
 * until stop(): buildx says only "sending tarball" until it is done. A missing file counts as 0 bytes.
 */
export class WriteWatcher {
  readonly #path: string;
  readonly #report: (bytes: number) => void;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(path: string, report: (bytes: number) => void, intervalMs = 500) {
    this.#path = path;
    this.#report = report;
    this.#intervalMs = intervalMs;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      void stat(this.#path).then(
        (s) => this.#timer && this.#report(s.size),
        () => undefined,
      );
    }, this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
