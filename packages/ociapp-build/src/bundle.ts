import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { printable } from "ociapp/artifact";
import {
  type BundleInput,
  type BundleMessage,
  packageName,
  reasonNotToBundle,
  reasonToDiscard,
} from "./bundle-policy.js";
import { run } from "./subprocess.js";

type Metafile = import("esbuild").Metafile;

// The bundled entry: `ociapp serve`'s path, the SDK, the app and its dependencies in one ESM file,
// made with esbuild on the build host before buildx. A container then loads one module instead of a
// few hundred (zod alone is 124): on Node 20 that is most of what the app's side of a cold start
// costs (README: "Cold start, standby and the first call"). The image keeps its installed
// node_modules and the app's files: the bundle only changes what the entrypoint loads.

/** Where the staged context holds the bundle (the folder the Containerfile copies from). */
export const BUNDLE_STAGING_DIR = "bundle";
const BUNDLE_FILE = "serve.mjs";
/** The bundle's path in the image, which its entrypoint and `ociapp check` run. */
export const IMAGE_BUNDLE_PATH = "/app/.ociapp/serve.mjs";

/**
 * Code run before the bundle's own: esbuild's CommonJS shim calls `require` for Node's built-in
 * modules, which an ES module has none of. A bundled module declaring its own top-level `require`
 * would clash with it: the syntax check below then sends the build back to the installed files.
 */
const BANNER = [
  'import { createRequire as __ociappCreateRequire } from "node:module";',
  "const require = __ociappCreateRequire(import.meta.url);",
].join("\n");

export type BundleOutcome =
  | { bundled: true; bytes: number; modules: number }
  | { bundled: false; reason: string };

export interface BundleRequest {
  projectRoot: string;
  /** the entrypoint's module path from the project root (and from /app in the image) */
  entryModule: string;
  /** the real path of the SDK the app resolves */
  sdkDir: string;
  /** the app's production dependencies, by name (what the image installs) */
  dependencies: ReadonlySet<string>;
  stagingDir: string;
  signal?: AbortSignal | undefined;
}

/**
 * Bundles the entry into `<stagingDir>/bundle/serve.mjs`, or says why not (bundle-policy.ts): the
 * build then runs the installed files as before. Never throws for the app's code; only an abort
 * rejects.
 */
export async function bundleEntry(request: BundleRequest): Promise<BundleOutcome> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch (error) {
    return { bundled: false, reason: `esbuild is not available here (${firstLine(error)})` };
  }
  const { projectRoot, entryModule, sdkDir } = request;
  const contents = [
    `import { main } from ${JSON.stringify(join(sdkDir, "dist", "cli.js"))};`,
    `await main(process.argv, { bundledApp: { module: ${JSON.stringify(entryModule)}, load: () => import(${JSON.stringify(resolve(projectRoot, entryModule))}) } });`,
  ].join("\n");
  let built: import("esbuild").BuildResult<{ metafile: true; write: false }>;
  try {
    built = await esbuild.build({
      // No sourcefile: the metafile names this entry "<stdin>", which no file of the app can be.
      stdin: { contents, resolveDir: projectRoot, loader: "js" },
      absWorkingDir: projectRoot,
      bundle: true,
      platform: "node",
      format: "esm",
      // Not minified: minifying saved under 2 ms of CPU per start on Node 20 (README, issue 16's
      // levers), and names (class names in messages, stack traces) stay the app's own.
      outfile: BUNDLE_FILE,
      write: false,
      metafile: true,
      logLevel: "silent",
      charset: "utf8",
      legalComments: "none",
      banner: { js: BANNER },
    });
  } catch (error) {
    request.signal?.throwIfAborted();
    const failure = error as { errors?: BundleMessage[]; warnings?: BundleMessage[] };
    return {
      bundled: false,
      reason:
        reasonToDiscard({
          errors: messages(failure.errors),
          warnings: [],
          inputs: [],
          entry: "",
          dependencies: request.dependencies,
        }) ?? `esbuild failed: ${firstLine(error)}`,
    };
  }
  request.signal?.throwIfAborted();
  const inputs = await readInputs(esbuild, built.metafile, projectRoot, sdkDir);
  const reason = reasonToDiscard({
    errors: messages(built.errors),
    warnings: messages(built.warnings),
    inputs,
    // esbuild names inputs by their path from absWorkingDir, the project root.
    entry: relative(projectRoot, resolve(projectRoot, entryModule)),
    dependencies: request.dependencies,
  });
  if (reason !== undefined) return { bundled: false, reason };
  const [output] = built.outputFiles;
  if (output === undefined) return { bundled: false, reason: "esbuild wrote no file" };

  const dir = join(request.stagingDir, BUNDLE_STAGING_DIR);
  await mkdir(dir, { recursive: true });
  const file = join(dir, BUNDLE_FILE);
  await writeFile(file, output.contents, { mode: 0o644 });
  // Early errors (a name declared twice, the banner's `require` among them) fail here, on the host,
  // instead of in the image's check step.
  const checked = await run(process.execPath, ["--check", file], { cwd: dir, signal: request.signal });
  if (checked.exitCode !== 0) {
    // Out of the build context too: the image must not carry a bundle it does not run.
    await rm(dir, { recursive: true, force: true });
    const lines = checked.tail.split("\n");
    const why = lines.find((line) => /^\w*Error\b/.test(line)) ?? lines[0] ?? "";
    return { bundled: false, reason: `the bundle does not parse: ${why.trim()}` };
  }
  return { bundled: true, bytes: output.contents.byteLength, modules: inputs.length };
}

/** Which entry a managed image runs, and the build's one line about it. */
export interface EntryChoice {
  bundled: boolean;
  note: string;
}

/**
 * The managed build's bundling step: decides (bundle-policy.ts), bundles, and says in one line which
 * entry the image runs and why.
 */
export async function stageBundle(
  request: BundleRequest & { enabled: boolean; sdkHasHook: boolean; installScripts: readonly string[] },
): Promise<EntryChoice> {
  const before = reasonNotToBundle({
    enabled: request.enabled,
    entryModule: request.entryModule,
    sdkHasHook: request.sdkHasHook,
    installScripts: request.installScripts,
  });
  const outcome: BundleOutcome =
    before === undefined ? await bundleEntry(request) : { bundled: false, reason: before };
  return {
    bundled: outcome.bundled,
    note: outcome.bundled
      ? `bundled the entry (${outcome.modules} modules, ${Math.round(outcome.bytes / 1024)} KiB): the image runs ${IMAGE_BUNDLE_PATH}`
      : `not bundling the entry: ${printable(outcome.reason)}; the image runs the installed files`,
  };
}

/** The bundle's modules (esbuild's metafile: paths from the project root), with their sources. */
async function readInputs(
  esbuild: typeof import("esbuild"),
  metafile: Metafile,
  projectRoot: string,
  sdkDir: string,
): Promise<BundleInput[]> {
  // esbuild's service transforms them concurrently: one round trip each, not one after another.
  const entries = Object.entries(metafile.inputs).filter(([path]) => path !== "<stdin>");
  return await Promise.all(
    entries.map(async ([path, input]): Promise<BundleInput> => {
      const absolute = resolve(projectRoot, path);
      const sdk = absolute.startsWith(`${sdkDir}${sep}`);
      return {
        path,
        source: sdk || !/\.(c|m)?js$/.test(path) ? undefined : await withoutComments(esbuild, absolute),
        imports: input.imports.filter((i) => i.external !== true).map((i) => i.path),
        packages: input.imports.flatMap((i) => {
          const name = i.external === true || i.original === undefined ? undefined : packageName(i.original);
          return name === undefined ? [] : [name];
        }),
        sdk,
      };
    }),
  );
}

/**
 * The file's code as esbuild reads it, comments dropped (only minifying whitespace drops them all); the file as it is when esbuild cannot parse
 * it alone (a leftover comment only makes a fallback more likely).
 */
async function withoutComments(esbuild: typeof import("esbuild"), file: string): Promise<string | undefined> {
  const source = await readFile(file, "utf8").catch(() => undefined);
  if (source === undefined) return undefined;
  try {
    return (
      await esbuild.transform(source, {
        loader: "js",
        minifyWhitespace: true,
        legalComments: "none",
        logLevel: "silent",
      })
    ).code;
  } catch {
    return source;
  }
}

function messages(
  list: readonly { id?: string; text: string; location?: { file: string } | null }[] | undefined,
) {
  return (list ?? []).map(
    (message): BundleMessage => ({ id: message.id ?? "", text: message.text, file: message.location?.file }),
  );
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}
