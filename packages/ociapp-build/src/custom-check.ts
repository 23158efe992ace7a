import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { type BuildxOptions, runBuildx, UNKNOWN_COMMAND } from "./buildx.js";
import { BuildError } from "./errors.js";
import type { BuildxEvent } from "./progress-log.js";
import { lastLines, run } from "./subprocess.js";

/** The parts of an OCI image config that say how its container starts. */
export interface StartCommand {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
}

/**
 * The `ociapp check` command line for an image that starts `ociapp serve`, or undefined when it does
 * not (the image is then not checked). The argv is Entrypoint followed by Cmd, as the engine runs it;
 * `sh -c "<words>"` counts when the words are plain (no quotes or shell syntax). serve is recognised
 * right after a program named `ociapp`, `ociapp.js` or `ociapp.mjs` (the bin on PATH, `node
 * .../ociapp/bin/ociapp.js`, `npx ociapp`); its `--app` (or `--app=`) value, else the image's
 * OCIAPP_APP, goes to check. Without either, check runs without --app, failing as serve would.
 */
export function checkCommand(config: StartCommand): string[] | undefined {
  let argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  const [first = "", flag, script] = argv;
  if (/(^|\/)(ba|da)?sh$/.test(first) && flag === "-c" && typeof script === "string") {
    if (!/^[\w@%+=:,./#\s-]+$/.test(script)) return undefined;
    argv = script.trim().split(/\s+/);
    if (argv[0] === "exec") argv.shift();
  }
  const serve = argv.findIndex(
    (word, i) => word === "serve" && i > 0 && /^ociapp(\.m?js)?$/.test(basename(argv[i - 1] ?? "")),
  );
  if (serve === -1) return undefined;
  let app: string | undefined;
  const rest = argv.slice(serve + 1);
  for (const [i, word] of rest.entries()) {
    if (word === "--app" && rest[i + 1] !== undefined) app = rest[i + 1];
    else if (word.startsWith("--app=")) app = word.slice("--app=".length);
  }
  app ??= config.Env?.find((entry) => entry.startsWith("OCIAPP_APP="))?.slice("OCIAPP_APP=".length);
  return [...argv.slice(0, serve), "check", ...(app === undefined ? [] : ["--app", app])];
}

export interface CustomCheckOptions {
  /** the artifact buildx wrote (an OCI layout tarball) and its manifest digest */
  artifact: string;
  digest: string;
  signal?: AbortSignal | undefined;
  env?: BuildxOptions["env"];
  onProgress?: BuildxOptions["onProgress"];
  onEvent?: ((event: BuildxEvent) => void) | undefined;
}

/**
 * Custom mode's entrypoint check: when the built image starts `ociapp serve`, a second, cache-only
 * buildx build runs `ociapp check` in it (FROM the artifact itself, an oci-layout build context),
 * with the image's user, working directory and environment, no network and a tmpfs /tmp.
 * Resolves "checked", "not-serve" (the image does not start serve: nothing to check) or "no-check"
 * (its SDK predates `ociapp check`). Throws BuildError OCIAPP_BUILD_APP_INVALID with the check's one
 * line when the entrypoint does not load, or OCIAPP_BUILD_FAILED when the check cannot run.
 */
export async function checkCustomImage(
  options: CustomCheckOptions,
): Promise<"checked" | "not-serve" | "no-check"> {
  const dir = await mkdtemp(join(tmpdir(), "ociapp-build-check-"));
  try {
    const layout = join(dir, "layout");
    const context = join(dir, "context");
    await mkdir(layout);
    await mkdir(context);
    const untar = await run("tar", ["-xf", options.artifact, "-C", layout], { signal: options.signal });
    if (untar.exitCode !== 0) {
      throw new BuildError("OCIAPP_BUILD_FAILED", "cannot unpack the artifact to check the app in it", {
        output: lastLines(untar.tail, 10),
      });
    }
    const command = checkCommand(await readStartCommand(layout, options.digest));
    if (command === undefined) return "not-serve";

    // Each argument JSON-quoted, ", " between them: the step's name then shows `"check", "--app"`,
    // which is how a failure is recognised as the check's (buildx.ts, CHECK_STEP).
    const exec = `[${command.map((word) => JSON.stringify(word)).join(", ")}]`;
    const containerfile = join(context, "Containerfile");
    await writeFile(
      containerfile,
      `FROM ociapp-built-image\nRUN --network=none --mount=type=tmpfs,target=/tmp ${exec}\n`,
    );
    try {
      await runBuildx({
        context,
        containerfile,
        output: { type: "cacheonly" },
        buildContexts: { "ociapp-built-image": `oci-layout://${layout}@${options.digest}` },
        signal: options.signal,
        env: options.env,
        onProgress: options.onProgress,
        onEvent: options.onEvent,
      });
    } catch (error) {
      if (error instanceof BuildError && UNKNOWN_COMMAND.test(error.output ?? "")) return "no-check";
      throw error;
    }
    return "checked";
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The image config's Entrypoint, Cmd and Env, through the unpacked layout's manifest. */
async function readStartCommand(layout: string, digest: string): Promise<StartCommand> {
  const blob = async (d: string) =>
    JSON.parse(await readFile(join(layout, "blobs", "sha256", d.replace(/^sha256:/, "")), "utf8")) as unknown;
  const manifest = (await blob(digest)) as { config?: { digest?: unknown } };
  const configDigest = manifest.config?.digest;
  if (typeof configDigest !== "string" || !/^sha256:[a-f0-9]{64}$/.test(configDigest)) {
    throw new BuildError("OCIAPP_BUILD_FAILED", "buildx wrote an image manifest without a config");
  }
  const config = (await blob(configDigest)) as { config?: StartCommand };
  return config.config ?? {};
}
