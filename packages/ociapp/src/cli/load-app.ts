import { existsSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type AnyApplication, isApplication } from "../application.js";
import { OciappUsageError } from "../errors.js";
import type { BundledApp } from "./bundled-app.js";

export interface LoadedApp {
  app: AnyApplication;
  /** The file loaded and the export read from it. */
  file: string;
  exportName: string;
  /** name and version of the nearest package.json above the module, if any. */
  packageInfo: { name?: string; version?: string };
}

const TYPESCRIPT = new Set([".ts", ".mts", ".cts"]);

function fail(code: string, message: string, cause?: unknown): never {
  throw new OciappUsageError(code, message, cause === undefined ? undefined : { cause });
}

/** Splits "<module>#<export>"; the export defaults to "app". */
export function parseAppSpec(spec: string): { modulePath: string; exportName: string } {
  const hash = spec.lastIndexOf("#");
  const modulePath = hash >= 0 ? spec.slice(0, hash) : spec;
  const exportName = hash >= 0 && hash < spec.length - 1 ? spec.slice(hash + 1) : "app";
  if (modulePath.trim() === "") {
    fail("OCIAPP_APP_SPEC", `--app must be <module>#<export>, got ${JSON.stringify(spec)}`);
  }
  return { modulePath, exportName };
}

/**
 * Loads and checks an app before anything is bound: every failure is one OciappUsageError line. The
 * module comes from `bundled` when the spec names the same file (a bundled entry), else from an import.
 */
export async function loadApp(
  spec: string,
  cwd: string = process.cwd(),
  bundled?: BundledApp,
): Promise<LoadedApp> {
  const { modulePath, exportName } = parseAppSpec(spec);
  const file = resolve(cwd, modulePath);
  if (!existsSync(file) || !statSync(file).isFile()) {
    fail("OCIAPP_APP_MODULE_NOT_FOUND", `app module ${modulePath} not found (looked for ${file})`);
  }
  const namespace =
    bundled !== undefined && resolve(cwd, bundled.module) === file
      ? await loadBundled(bundled, modulePath)
      : await importModule(file, modulePath);
  const value = exportOf(namespace, exportName);
  if (value === undefined) {
    const names = Object.keys(namespace).filter(
      (key) => key !== "default" || namespace.default !== undefined,
    );
    fail(
      "OCIAPP_APP_EXPORT_NOT_FOUND",
      `app module ${modulePath} has no export ${JSON.stringify(exportName)} (it exports: ${names.join(", ") || "nothing"})${missingExportHint(namespace, names, modulePath, exportName)}`,
    );
  }
  if (!isApplication(value)) {
    if (isApplicationClass(value)) {
      fail(
        "OCIAPP_NOT_AN_APPLICATION",
        `export ${JSON.stringify(exportName)} of ${modulePath} is an Application class, not an instance: export an instance (export const app = new ${value.name || "MyApp"}()) and name that export: ${modulePath}#app`,
      );
    }
    fail(
      "OCIAPP_NOT_AN_APPLICATION",
      `export ${JSON.stringify(exportName)} of ${modulePath} is not an ociapp Application (got ${describe(value)})`,
    );
  }
  for (const schema of ["request", "response"] as const) {
    const candidate = (value as unknown as Record<string, unknown>)[schema];
    if (!hasSafeParseAsync(candidate)) {
      fail(
        "OCIAPP_APP_SCHEMA_MISSING",
        `${appName(value)} has no ${schema} schema: declare \`readonly ${schema} = z.object({ ... })\` (a zod 4 schema)`,
      );
    }
  }
  if (typeof value.execute !== "function") {
    fail("OCIAPP_NOT_AN_APPLICATION", `${appName(value)} has no execute method`);
  }
  return { app: value, file, exportName, packageInfo: readPackageInfo(dirname(file)) };
}

async function loadBundled(bundled: BundledApp, modulePath: string): Promise<Record<string, unknown>> {
  try {
    const namespace = await bundled.load();
    // Node lists a module namespace's names sorted; a bundler's object in declaration order. The
    // messages that list them read the same either way.
    return Object.fromEntries(
      Object.keys(namespace)
        .sort()
        .map((name) => [name, namespace[name]]),
    );
  } catch (error) {
    fail("OCIAPP_APP_MODULE_LOAD", `cannot load app module ${modulePath}: ${message(error)}`, error);
  }
}

async function importModule(file: string, modulePath: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  const typescript = TYPESCRIPT.has(extname(file));
  // TypeScript goes through tsx whenever tsx can be found, so that an app loads the same way on
  // every Node: Node 22.18+ and 24 strip types themselves, but do not map the `.js` specifiers of
  // TypeScript sources to their `.ts` files. Without tsx, Node's own loading is what is left.
  const viaTsx = typescript && (await registerTsx(file));
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (error) {
    if (typescript && !viaTsx) {
      // Node 20 refuses the entry file itself; a newer Node stripped its types and failed on something.
      const why =
        (error as NodeJS.ErrnoException).code === "ERR_UNKNOWN_FILE_EXTENSION"
          ? ""
          : ` (Node's own type stripping failed: ${message(error)})`;
      fail(
        "OCIAPP_APP_MODULE_LOAD",
        `app module ${modulePath} is TypeScript and tsx is not installed${why}: add tsx, or point --app at the built JavaScript`,
        error,
      );
    }
    fail("OCIAPP_APP_MODULE_LOAD", `cannot load app module ${modulePath}: ${message(error)}`, error);
  }
}

/**
 * Registers tsx's ESM hooks, found from the app's folder, the working directory, or the SDK;
 * false when none of them has tsx.
 */
async function registerTsx(file: string): Promise<boolean> {
  const bases = [join(dirname(file), "noop.js"), join(process.cwd(), "noop.js"), import.meta.url];
  for (const base of bases) {
    const entry = resolveTsxEsmApi(base);
    if (entry === undefined) continue;
    const api = (await import(pathToFileURL(entry).href)) as { register?: () => unknown };
    if (typeof api.register === "function") {
      api.register();
      return true;
    }
  }
  return false;
}

/**
 * The file behind tsx's "./esm/api" import condition. require.resolve would pick its CommonJS
 * build, whose register() cannot load tsx's ESM hooks.
 */
function resolveTsxEsmApi(base: string): string | undefined {
  let manifestPath: string;
  try {
    manifestPath = createRequire(base).resolve("tsx/package.json");
  } catch {
    return undefined;
  }
  try {
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { exports?: Record<string, unknown> };
    const entry = manifest.exports?.["./esm/api"];
    const condition =
      typeof entry === "object" && entry !== null ? (entry as Record<string, unknown>).import : undefined;
    const target =
      typeof entry === "string"
        ? entry
        : typeof condition === "string"
          ? condition
          : typeof condition === "object" && condition !== null
            ? (condition as Record<string, unknown>).default
            : undefined;
    return typeof target === "string" ? join(dirname(manifestPath), target) : undefined;
  } catch {
    return undefined;
  }
}

function exportOf(namespace: Record<string, unknown>, name: string): unknown {
  if (namespace[name] !== undefined) return namespace[name];
  // A CommonJS module's exports arrive as the default export.
  const fallback = namespace.default;
  if (name !== "default" && typeof fallback === "object" && fallback !== null) {
    return (fallback as Record<string, unknown>)[name];
  }
  return undefined;
}

function isApplicationClass(value: unknown): value is { name: string } {
  return typeof value === "function" && isApplication((value as { prototype?: unknown }).prototype);
}

/**
 * What to do about a missing export, when the module says, in this order: one Application instance
 * under another name (use it), a default export (name it: the entrypoint is <module>#<export>) when
 * it is an Application, an Application class (export an instance of it), any default export. Empty
 * when nothing in the module points anywhere.
 */
function missingExportHint(
  namespace: Record<string, unknown>,
  names: string[],
  modulePath: string,
  exportName: string,
): string {
  const exported = (name: string) => exportOf(namespace, name);
  const instances = names.filter((name) => name !== "default" && isApplication(exported(name)));
  if (instances.length === 1) return `: use ${JSON.stringify(`${modulePath}#${instances[0]}`)}`;
  const nameTheDefault = `: name the default export (export const ${exportName} = new MyApp()); the entrypoint is <module>#<export>, the export "app" when left out`;
  if (isApplication(namespace.default)) return nameTheDefault;
  const [aClass] = names.filter((name) => isApplicationClass(exported(name)));
  if (aClass !== undefined) {
    const className = aClass === "default" ? "MyApp" : aClass;
    const what = aClass === "default" ? "the default export" : aClass;
    return `: ${what} is an Application class: export an instance (export const ${exportName} = new ${className}())`;
  }
  if (names.includes("default")) return nameTheDefault;
  return "";
}

function hasSafeParseAsync(value: unknown): boolean {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { safeParseAsync?: unknown }).safeParseAsync === "function"
  );
}

function appName(app: object): string {
  const name = app.constructor?.name;
  return name && name !== "Object" ? `Application ${name}` : "the Application";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "object") {
    const name = (value as object).constructor?.name;
    return name && name !== "Object" ? `an instance of ${name}` : "a plain object";
  }
  return typeof value;
}

function message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

function readPackageInfo(start: string): { name?: string; version?: string } {
  let dir = start;
  for (let depth = 0; depth < 32; depth++) {
    const candidate = join(dir, "package.json");
    if (existsSync(candidate)) {
      try {
        const json = JSON.parse(readFileSync(candidate, "utf8")) as { name?: unknown; version?: unknown };
        const info: { name?: string; version?: string } = {};
        if (typeof json.name === "string") info.name = json.name;
        if (typeof json.version === "string") info.version = json.version;
        if (info.name !== undefined || info.version !== undefined) return info;
      } catch {
        // An unreadable package.json only costs the hello its app info.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return {};
}
