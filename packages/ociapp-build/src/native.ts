import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { PackageJson } from "./project.js";
import { resolveInstalledPackage } from "./resolve-package.js";

/**
 * A production dependency that runs code when npm installs it, "name@version". Such packages compile
 * native code (node-gyp, prebuild-install falling back to node-gyp, cmake-js) or may: a managed build
 * then installs the dependencies in a builder stage with a compiler, Python, make and Node's headers.
 */
export type InstallScriptPackage = string;

/** Lifecycle scripts npm runs on install; a binding.gyp without any of them gets `node-gyp rebuild`. */
const INSTALL_SCRIPTS = ["preinstall", "install", "postinstall"] as const;
/** Bounds the walk of an installed tree (a real app has hundreds to a few thousand packages). */
const MAX_PACKAGES = 20_000;

/**
 * The production dependencies of an app that have install scripts, as `npm install --omit=dev` in
 * the image would run them.
 *
 * - With an npm lockfile (v2/v3, `packages`): the entries npm marked `hasInstallScript` (npm sets it
 *   for preinstall/install/postinstall scripts and for a binding.gyp), except `dev` ones and optional
 *   ones for another OS or CPU.
 * - Otherwise (a pnpm workspace, a v1 lockfile): the installed tree, walked from the app's
 *   dependencies and optionalDependencies (and each package's dependencies, optional and peer
 *   dependencies) as Node resolves them: a package counts when its package.json has one of those
 *   scripts, says `"gypfile": true`, or its folder has a binding.gyp.
 *
 * Returns "name@version" strings, sorted; empty when nothing needs compiling (the build is then the
 * plain one-stage image).
 */
export async function findInstallScripts(
  projectRoot: string,
  packageJson: PackageJson,
  lockfile: unknown,
): Promise<InstallScriptPackage[]> {
  const fromLock = fromLockfile(lockfile);
  const found = fromLock ?? (await fromInstalledTree(projectRoot, packageJson));
  return [...new Set(found)].sort();
}

function fromLockfile(lockfile: unknown): string[] | undefined {
  if (typeof lockfile !== "object" || lockfile === null) return undefined;
  const packages = (lockfile as { packages?: unknown }).packages;
  if (typeof packages !== "object" || packages === null) return undefined;
  const found: string[] = [];
  for (const [path, entry] of Object.entries(packages as Record<string, unknown>)) {
    if (path === "" || typeof entry !== "object" || entry === null) continue;
    const e = entry as Record<string, unknown>;
    if (e.hasInstallScript !== true || e.dev === true) continue;
    if (e.optional === true && !matchesPlatform(e.os, process.platform)) continue;
    if (e.optional === true && !matchesPlatform(e.cpu, process.arch)) continue;
    const name = typeof e.name === "string" ? e.name : path.slice(path.lastIndexOf("node_modules/") + 13);
    found.push(`${name}@${typeof e.version === "string" ? e.version : "?"}`);
  }
  return found;
}

/** npm's os/cpu lists: names allow, "!name" denies; a missing list allows everything. */
function matchesPlatform(list: unknown, value: string): boolean {
  if (!Array.isArray(list) || list.length === 0) return true;
  if (list.includes(`!${value}`)) return false;
  const allowed = list.filter((item) => typeof item === "string" && !item.startsWith("!"));
  return allowed.length === 0 || allowed.includes(value);
}

async function fromInstalledTree(projectRoot: string, packageJson: PackageJson): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  // Each entry: a dependency name and the folder whose node_modules it resolves from.
  const queue: { name: string; from: string }[] = dependencyNames(packageJson).map((name) => ({
    name,
    from: projectRoot,
  }));
  while (queue.length > 0 && seen.size < MAX_PACKAGES) {
    const next = queue.shift();
    if (!next) break;
    const resolved = await resolveInstalledPackage(next.from, next.name);
    // Not installed (an optional dependency for another platform, or a project not installed yet):
    // nothing to learn about it here.
    if (!resolved || seen.has(resolved.dir)) continue;
    seen.add(resolved.dir);
    const pkg = resolved.packageJson;
    if (await runsOnInstall(resolved.dir, pkg)) {
      found.push(`${typeof pkg.name === "string" ? pkg.name : next.name}@${String(pkg.version ?? "?")}`);
    }
    for (const name of dependencyNames(pkg, true)) queue.push({ name, from: resolved.dir });
  }
  return found;
}

function dependencyNames(pkg: Record<string, unknown>, withPeers = false): string[] {
  const fields = ["dependencies", "optionalDependencies", ...(withPeers ? ["peerDependencies"] : [])];
  const names: string[] = [];
  for (const field of fields) {
    const deps = pkg[field];
    if (typeof deps === "object" && deps !== null && !Array.isArray(deps)) names.push(...Object.keys(deps));
  }
  return names;
}

async function runsOnInstall(dir: string, pkg: Record<string, unknown>): Promise<boolean> {
  const scripts = pkg.scripts;
  if (typeof scripts === "object" && scripts !== null) {
    for (const name of INSTALL_SCRIPTS) {
      if (typeof (scripts as Record<string, unknown>)[name] === "string") return true;
    }
  }
  if (pkg.gypfile === true) return true;
  return stat(join(dir, "binding.gyp")).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** Reads a JSON file, or undefined when it is missing or not JSON. */
export async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as unknown;
  } catch {
    return undefined;
  }
}
