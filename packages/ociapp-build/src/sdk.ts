import { rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { BuildError } from "./errors.js";
import { resolveInstalledPackage } from "./resolve-package.js";
import { lastLines, run } from "./subprocess.js";

export interface LocatedSdk {
  dir: string;
  version: string;
  /** The wire protocol its `ociapp serve` speaks, from its package.json; absent before SDK 0.2. */
  protocol?: number;
  /** Its `main()` takes a bundled app module (package.json `ociapp.bundledEntry`): bundle.ts may run. */
  bundledEntry: boolean;
}

/**
 * The SDK's package.json field `"ociapp": { "protocol": 2 }`: read, never run, so that an artifact
 * can say which protocol its image speaks. undefined when missing or not a positive integer.
 */
export function sdkProtocol(packageJson: Record<string, unknown>): number | undefined {
  const protocol = sdkField(packageJson, "protocol");
  return typeof protocol === "number" && Number.isSafeInteger(protocol) && protocol > 0
    ? protocol
    : undefined;
}

function sdkField(packageJson: Record<string, unknown>, name: string): unknown {
  const field = packageJson.ociapp;
  return typeof field === "object" && field !== null ? (field as Record<string, unknown>)[name] : undefined;
}

/** Custom mode: the protocol of the SDK the project has installed (Node's resolution from its root), if any. */
export async function installedSdkProtocol(projectRoot: string): Promise<number | undefined> {
  const found = await resolveInstalledPackage(projectRoot, "ociapp");
  return found?.packageJson.name === "ociapp" ? sdkProtocol(found.packageJson) : undefined;
}

/** Files the image's `ociapp serve` needs from the SDK: its compiled library and CLI. */
const REQUIRED_BUILD_OUTPUT = ["dist/index.js", "dist/cli.js", "bin/ociapp.js"];

/**
 * The SDK copy the app itself resolves (the SDK is not published: the image gets exactly this one).
 * It must be built, since the image runs its JavaScript.
 */
export async function locateSdk(projectRoot: string): Promise<LocatedSdk> {
  const found = await resolveInstalledPackage(projectRoot, "ociapp");
  if (found?.packageJson.name !== "ociapp") {
    throw new BuildError(
      "OCIAPP_BUILD_SDK_MISSING",
      `the app does not resolve the ociapp SDK (no node_modules/ociapp from ${projectRoot}): add "ociapp" to its dependencies and install them`,
    );
  }
  for (const file of REQUIRED_BUILD_OUTPUT) {
    const exists = await stat(join(found.dir, file)).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!exists) {
      throw new BuildError(
        "OCIAPP_BUILD_SDK_NOT_BUILT",
        `the ociapp SDK at ${found.dir} is not built (${file} is missing): build it first (in the ociapp repository: pnpm --filter ociapp build)`,
      );
    }
  }
  const sdk: LocatedSdk = {
    dir: found.dir,
    version: String(found.packageJson.version ?? "0.0.0"),
    bundledEntry: sdkField(found.packageJson, "bundledEntry") === 1,
  };
  const protocol = sdkProtocol(found.packageJson);
  if (protocol !== undefined) sdk.protocol = protocol;
  return sdk;
}

/** Packs the SDK with `npm pack` (honouring its "files") into `destination`, as `fileName`. */
export async function packSdk(
  sdk: LocatedSdk,
  destinationDir: string,
  fileName: string,
  signal?: AbortSignal,
): Promise<void> {
  const result = await run(
    "npm",
    ["pack", sdk.dir, "--pack-destination", destinationDir, "--ignore-scripts", "--json", "--loglevel=error"],
    { cwd: destinationDir, signal },
  );
  const packed = parsePackJson(result.stdout)?.[0]?.filename;
  if (result.exitCode !== 0 || typeof packed !== "string") {
    throw new BuildError("OCIAPP_BUILD_PACK_FAILED", `npm pack of the ociapp SDK at ${sdk.dir} failed`, {
      output: lastLines(result.tail, 20),
    });
  }
  await rename(join(destinationDir, packed), join(destinationDir, fileName));
}

export interface PackedFile {
  path: string;
  mode: number;
}

/** The files `npm pack` would publish for the project: its "files", .npmignore, and npm's rules. */
export async function listPackFiles(projectRoot: string, signal?: AbortSignal): Promise<PackedFile[]> {
  const result = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts", "--loglevel=error"], {
    cwd: projectRoot,
    signal,
  });
  const files = parsePackJson(result.stdout)?.[0]?.files;
  if (result.exitCode !== 0 || !Array.isArray(files)) {
    throw new BuildError("OCIAPP_BUILD_PACK_FAILED", `npm pack --dry-run in ${projectRoot} failed`, {
      output: lastLines(result.tail, 20),
    });
  }
  return files
    .filter((file): file is { path: string; mode?: number } => typeof file?.path === "string")
    .map((file) => ({ path: file.path, mode: typeof file.mode === "number" ? file.mode : 0o644 }));
}

type PackJson = { filename?: unknown; files?: { path?: unknown; mode?: unknown }[] }[];

function parsePackJson(stdout: string): PackJson | undefined {
  // npm may print lifecycle noise before the JSON array.
  const start = stdout.indexOf("[");
  if (start === -1) return undefined;
  try {
    const parsed = JSON.parse(stdout.slice(start)) as unknown;
    return Array.isArray(parsed) ? (parsed as PackJson) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the SDK has `ociapp check` (SDKs from before it do not): asks it, `ociapp check --help`
 * with this machine's Node, from the SDK's own folder. Its `bin/ociapp.js` is what the image runs.
 */
export async function sdkHasCheck(sdk: LocatedSdk, signal?: AbortSignal): Promise<boolean> {
  const result = await run(process.execPath, [join(sdk.dir, "bin", "ociapp.js"), "check", "--help"], {
    cwd: sdk.dir,
    signal,
  }).catch(() => undefined);
  return result?.exitCode === 0 && /--app/.test(result.stdout);
}
