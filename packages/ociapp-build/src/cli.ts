import { Command, CommanderError, Option } from "commander";
import {
  ArtifactFileError,
  ArtifactFormatError,
  inspectArtifact,
  printable,
  printableJson,
  printableLines,
} from "ociapp/artifact";
import { RegistryError } from "ociapp/registry";
import { build } from "./build.js";
import { BuildError } from "./errors.js";
import { formatArtifactInfo, formatBytes } from "./format.js";
import { toolVersion } from "./options.js";
import { type DisplayStream, PhaseDisplay } from "./phase-display.js";
import type { BuildPhase } from "./phases.js";
import { type PushFlags, push } from "./push.js";

export interface CliIo {
  stdout: { write(chunk: string): unknown };
  /** progress and errors; a TTY (isTTY) gets the one updating progress line */
  stderr: DisplayStream;
}

/**
 * `ociapp-build <project-root>` and `ociapp-build inspect <file>`. Returns the exit code (also set on
 * process.exitCode): 0, 1 for any error (printed as one line), 130 when interrupted.
 */
export async function main(argv: string[], io: CliIo = process): Promise<number> {
  const code = await runCli(argv, io);
  process.exitCode = code;
  // Interrupted: the clean-up is done and runCli no longer holds the signal handlers, so exit now
  // rather than let a second Ctrl-C arriving while the event loop drains kill the process by signal.
  if (code === 130) process.exit(code);
  return code;
}

/** The CLI without touching process.exitCode: `argv` as process.argv ([node, script, ...args]). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const controller = new AbortController();
  // Kept for the whole run: a second Ctrl-C must not kill the process before it has cleaned up.
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let exitCode = 0;
  let display: PhaseDisplay | undefined;

  const program = new Command("ociapp-build")
    .description("Package an ociapp application into a .ociapp OCI image-layout tarball with docker buildx")
    .version(toolVersion(), "-V, --version")
    .argument("<project-root>", 'the app\'s folder (its package.json holds the "ociapp" configuration)')
    .option("-o, --output-dir <dir>", "where <name>-<version>.ociapp is written (default: the project root)")
    .option("--network <mode>", "network for RUN steps during the build (default: the engine's)")
    .option("--base-image <ref>", "base image of a managed build (default: node:<Node major>-bookworm-slim)")
    .option("--no-cache", "build without buildx's layer cache")
    .option(
      "--no-bundle",
      "managed builds: run the installed files instead of one esbuild bundle of the server, SDK, app and dependencies",
    )
    .addOption(
      new Option(
        "--progress <mode>",
        "on stderr: auto (a terminal: one updating line; otherwise a line per phase), plain (buildx's own lines), quiet",
      )
        .choices(["auto", "plain", "quiet"])
        .default("auto"),
    )
    .addOption(
      new Option("--compression <type>", "layer compression").choices(["gzip", "zstd"]).default("gzip"),
    )
    .option("--image <ref>", "image reference recorded in the artifact (default: <name>:<version>)")
    .option("--json", 'print one JSON line {"path","bytes","digest","image"} on stdout')
    .showHelpAfterError(false)
    // `inspect --json` belongs to inspect: options after a subcommand are the subcommand's.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Commander's own errors ("error: option ...") read like the CLI's others.
      outputError: (text, write) => write(`ociapp-build: ${text}`),
    })
    .action(async (projectRoot: string, flags: BuildFlags) => {
      // auto: phases only (one updating line on a terminal); plain: buildx's lines as it prints them.
      display = flags.progress === "auto" ? new PhaseDisplay(io.stderr) : undefined;
      const result = await build({
        projectRoot,
        ...(flags.outputDir === undefined ? {} : { outputDir: flags.outputDir }),
        ...(flags.network === undefined ? {} : { network: flags.network }),
        ...(flags.baseImage === undefined ? {} : { baseImage: flags.baseImage }),
        ...(flags.image === undefined ? {} : { image: flags.image }),
        noCache: !flags.cache,
        bundle: flags.bundle,
        progress: flags.progress === "plain" ? "plain" : "quiet",
        compression: flags.compression,
        signal: controller.signal,
        onProgress: (chunk) => io.stderr.write(chunk),
        ...(display ? { onPhase: (phase: BuildPhase) => display?.update(phase) } : {}),
      });
      display?.clear();
      // plain progress printed it with the build's other lines; quiet prints none.
      if (flags.progress === "auto" && result.entry.note !== "")
        io.stderr.write(`ociapp-build: ${result.entry.note}\n`);
      if (flags.json) {
        io.stdout.write(`${printableJson(result)}\n`);
      } else {
        const reused = result.reused ? ", reused: build context unchanged" : "";
        io.stdout.write(
          `${printable(result.path)} (${formatBytes(result.bytes)}, ${result.digest}, image ${result.image}${reused})\n`,
        );
      }
    });

  program
    .command("inspect")
    .description(
      "show an artifact's name, version, entrypoint, digest, size and layers (reads the file only)",
    )
    .argument("<file>", "a .ociapp file")
    .option("--json", "print the details as one JSON line")
    .action(async (file: string, flags: { json?: boolean }) => {
      const info = await inspectArtifact(file, { signal: controller.signal });
      // Both forms escape what the artifact controls: JSON.stringify alone lets DEL, C1 controls and
      // bidi overrides through raw (printableJson writes them as \uXXXX; the parsed values are the same).
      io.stdout.write(flags.json ? `${printableJson(info)}\n` : formatArtifactInfo(file, info));
    });

  program
    .command("push")
    .description("push an artifact to an OCI registry (credentials from OCIAPP_REGISTRY_USERNAME/_PASSWORD)")
    .argument("<file>", "a .ociapp file")
    .argument("<reference>", "registry/repository[:tag], e.g. registry.example:5000/apps/echo:0.1.0")
    .option("--plain-http", "plain HTTP, for a registry on a loopback address")
    .option("--ca <file>", "PEM CA that signs the registry's certificate")
    .option("--json", 'print one JSON line {"reference","digest","blobs","uploaded"}')
    .action(async (file: string, target: string, flags: PushFlags & { json?: boolean }) => {
      const result = await push(file, target, flags, controller.signal);
      io.stdout.write(
        flags.json
          ? `${JSON.stringify(result)}\n`
          : `${result.reference} (${result.uploaded} of ${result.blobs} blobs uploaded)\n`,
      );
    });

  try {
    await program.parseAsync(argv);
  } catch (error) {
    display?.clear();
    exitCode = report(error, io);
  } finally {
    display?.clear();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return exitCode;
}

interface BuildFlags {
  outputDir?: string;
  network?: string;
  baseImage?: string;
  image?: string;
  cache: boolean;
  bundle: boolean;
  progress: "auto" | "plain" | "quiet";
  compression: "gzip" | "zstd";
  json?: boolean;
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory, not a file",
  ENOTDIR: "not a directory",
};

/** A file-system error as "<what>: <path>", or undefined for any other error. */
function describeFileError(error: unknown): string | undefined {
  const { code, path } = error as { code?: unknown; path?: unknown };
  const what = typeof code === "string" ? FILE_ERRORS[code] : undefined;
  if (what === undefined) return undefined;
  return typeof path === "string" ? `${what}: ${path}` : (error as Error).message;
}

/**
 * Prints an error as one line. Messages can hold what a project or an artifact wrote (a name, a
 * failing step's text), so each is printed through `printable` (control characters, newlines, C1 and
 * bidi controls as \uXXXX) and a step's output through `printableLines` (its lines kept, each behind
 * "  | "): neither can forge a line of ours or drive the terminal.
 */
function report(error: unknown, io: CliIo): number {
  const line = (text: string) => io.stderr.write(`ociapp-build: error: ${printable(text)}\n`);
  if (error instanceof CommanderError) {
    // Commander printed its own one-line message; --help and --version end here too.
    return error.exitCode === 0 ? 0 : 1;
  }
  if (error instanceof BuildError) {
    line(error.message);
    if (error.output) io.stderr.write(`${indent(printableLines(error.output))}\n`);
    return error.code === "OCIAPP_BUILD_ABORTED" ? 130 : 1;
  }
  if (error instanceof RegistryError) {
    line(error.message);
    return 1;
  }
  if (error instanceof ArtifactFileError) {
    // "cannot read artifact <path>: it is a FIFO, not a regular file", and the like.
    line(error.message);
    return 1;
  }
  if (error instanceof ArtifactFormatError) {
    line(`invalid artifact: ${error.message}`);
    return 1;
  }
  const fileProblem = describeFileError(error);
  if (fileProblem !== undefined) {
    line(fileProblem);
    return 1;
  }
  if ((error as Error)?.name === "AbortError") {
    line("interrupted");
    return 130;
  }
  const stack = (error as Error)?.stack ?? String(error);
  io.stderr.write(`ociapp-build: unexpected error: ${printableLines(stack)}\n`);
  return 1;
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((line) => `  | ${line}`)
    .join("\n");
}
