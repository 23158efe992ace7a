// Whether a managed build may run a bundled entry (bundle.ts makes it): pure decisions, no I/O.
// A bundle is only worth its cold-start gain when it behaves as the installed files do, so anything
// that ties code to its own location on disk, loads code by a computed name, or loads a native
// addon sends the build back to the unbundled entrypoint. Each check errs towards falling back: the
// patterns are matched in strings too.

/** What is known before esbuild runs. */
export interface BundlePreflight {
  /** the build's `bundle` option (default true) */
  enabled: boolean;
  /** the entrypoint's module path, from the project root */
  entryModule: string;
  /** the app's SDK has the bundled-entry hook (its package.json's `ociapp.bundledEntry`) */
  sdkHasHook: boolean;
  /** production dependencies with install scripts ("name@version"): native addons, usually */
  installScripts: readonly string[];
}

const TYPESCRIPT = /\.(c|m)?ts$/;

/** Why the build must not try to bundle, or undefined when it may. */
export function reasonNotToBundle(facts: BundlePreflight): string | undefined {
  if (!facts.enabled) return "turned off (bundle: false / --no-bundle)";
  if (!facts.sdkHasHook) return "the app's ociapp SDK has no bundled-entry hook (an SDK before 0.2.1)";
  if (TYPESCRIPT.test(facts.entryModule)) {
    return `the entrypoint ${facts.entryModule} is TypeScript (served through tsx, as built)`;
  }
  if (facts.installScripts.length > 0) {
    return `dependencies with install scripts (${facts.installScripts.join(", ")}) may load native addons`;
  }
  return undefined;
}

/** One of esbuild's messages, as its build result (or error) gives it. */
export interface BundleMessage {
  id: string;
  text: string;
  file?: string | undefined;
}

/** One module esbuild put in the bundle: its path from the project root and, for code, its source. */
export interface BundleInput {
  path: string;
  /** its code without comments (esbuild's transform: a comment naming `import()` is no reason) */
  source?: string | undefined;
  /** the paths of the bundled modules it imports */
  imports: readonly string[];
  /** the packages it imports by name ("zod" for `import "zod/mini"`); Node's built-ins left out */
  packages: readonly string[];
  /** the SDK's own code, kept bundle-safe by ociapp (its tsx path is never taken for a built entry) */
  sdk: boolean;
}

/** Source patterns that tie code to its own file or load code by a computed name. */
const LOCATION_BOUND: readonly { pattern: RegExp; what: string }[] = [
  { pattern: /\bimport\.meta\.(url|dirname|filename|resolve)\b/, what: "reads import.meta.url" },
  { pattern: /\b__(dirname|filename)\b/, what: "reads __dirname/__filename" },
  { pattern: /\brequire\.resolve\b/, what: "calls require.resolve" },
  { pattern: /\bimport\s*\(\s*(?!["'])/, what: "imports a module by a computed name" },
  { pattern: /(?<![.\w$])require\s*\(\s*(?!["'])/, what: "requires a module by a computed name" },
];

/** Native addons, WebAssembly and other files esbuild would copy or inline rather than load as code. */
const NOT_CODE = /\.(node|wasm)$/;
const SDK_MODULE = /(^|\/)ociapp\/dist\/application\.js$/;
const CODE = /\.(c|m)?js$|\.json$/;

/**
 * The modules the app's code reaches from its entry module (its path among the inputs) without going
 * through the SDK: the app's own and its dependencies'. What only the SDK imports (commander, for the
 * full command line) is the SDK's, tested bundled with it.
 */
export function appModules(inputs: readonly BundleInput[], entry: string): BundleInput[] {
  const byPath = new Map(inputs.map((input) => [input.path, input]));
  const seen = new Set<string>();
  const reached: BundleInput[] = [];
  const queue = [entry];
  for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
    const input = byPath.get(path);
    if (input === undefined || input.sdk || seen.has(path)) continue;
    seen.add(path);
    reached.push(input);
    queue.push(...input.imports);
  }
  return reached;
}

/** Why the bundle esbuild made must not be used, or undefined when it may. */
export function reasonToDiscard(result: {
  errors: readonly BundleMessage[];
  warnings: readonly BundleMessage[];
  inputs: readonly BundleInput[];
  /** the app's entry module among the inputs */
  entry: string;
  /** the app's production dependencies (dependencies, optionalDependencies, peerDependencies) */
  dependencies: ReadonlySet<string>;
}): string | undefined {
  const [error] = result.errors;
  if (error !== undefined) return `esbuild failed: ${describe(error)}`;
  for (const input of result.inputs) {
    if (NOT_CODE.test(input.path)) return `${input.path} is a native or WebAssembly module`;
    if (!CODE.test(input.path)) return `${input.path} is not JavaScript or JSON`;
  }
  const app = appModules(result.inputs, result.entry);
  // The image installs production dependencies only: a package the app's own code imports from the
  // host's node_modules without declaring it (a devDependency, a workspace's hoisted package) would
  // run bundled and fail unbundled. Packages' own imports are npm's to install.
  for (const input of app) {
    if (input.path.includes("node_modules/")) continue;
    const undeclared = input.packages.find((name) => !result.dependencies.has(name));
    if (undeclared !== undefined) {
      return `${input.path} imports ${undeclared}, which is not among the app's production dependencies`;
    }
  }
  for (const input of app) {
    if (input.source === undefined || input.path.endsWith(".json")) continue;
    const found = LOCATION_BOUND.find(({ pattern }) => pattern.test(input.source ?? ""));
    if (found !== undefined) return `${input.path} ${found.what}`;
  }
  // A warning is esbuild saying it may not reproduce what Node would do (an unbundled require, an
  // import it cannot follow): any one sends the build back to the installed files.
  const [warning] = result.warnings;
  if (warning !== undefined) return `esbuild warned: ${describe(warning)}`;
  // The app and the entry must share one SDK (one Application brand, one zod): a second copy means
  // the app resolves another ociapp than the one the image installs.
  const second = result.inputs.find((input) => !input.sdk && SDK_MODULE.test(input.path));
  if (second !== undefined) return `the app resolves a second ociapp SDK (${second.path})`;
  return undefined;
}

/** The package a bare specifier names ("@scope/pkg/sub" -> "@scope/pkg"); undefined for a path. */
export function packageName(specifier: string): string | undefined {
  if (/^(\.|\/|[a-z]+:)/i.test(specifier)) return undefined;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function describe(message: BundleMessage): string {
  const text = message.text.split("\n")[0] ?? message.text;
  return message.file ? `${text} (${message.file})` : text;
}
