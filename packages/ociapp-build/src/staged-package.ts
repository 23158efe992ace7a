import { quote } from "ociapp/artifact";
import { BuildError } from "./errors.js";
import type { PackageJson } from "./project.js";

/** Where the packed SDK sits next to the staged package.json, inside the image's /app. */
export const SDK_TARBALL = ".ociapp/ociapp-sdk.tgz";
export const SDK_SPEC = `file:${SDK_TARBALL}`;

/** Specs that point into the developer's machine and cannot be installed inside the image. */
const LOCAL_SPEC = /^(workspace|link|file|portal):/;
/** Specs npm resolves through a registry by version (the ones pinning applies to). */
const REGISTRY_SPEC = /^(catalog:|[~^<>=]|\d|\*|x|latest$|$)/i;

export interface StagePackageOptions {
  /** true when a package-lock.json or npm-shrinkwrap.json pins the tree */
  hasLockfile: boolean;
  /** the version installed in the project's node_modules for a dependency, if any */
  installedVersion: (name: string) => string | undefined;
}

/**
 * The package.json installed inside the image. The SDK dependency points at the packed SDK; scripts
 * and devDependencies go (the app is built on the host, and lifecycle scripts must not run a build in
 * the image). Without a lockfile (apps in a pnpm workspace), each production dependency is pinned to
 * the exact version installed in node_modules, which is the version the app was built and tested
 * with; its own dependencies then resolve within their declared ranges.
 */
export function stagePackageJson(pkg: PackageJson, options: StagePackageOptions): PackageJson {
  const staged: PackageJson = { ...pkg };
  for (const key of ["devDependencies", "scripts", "workspaces", "pnpm", "packageManager"])
    delete staged[key];

  for (const field of ["dependencies", "optionalDependencies"] as const) {
    const deps = pkg[field];
    if (deps === undefined) continue;
    if (typeof deps !== "object" || deps === null || Array.isArray(deps)) {
      throw new BuildError("OCIAPP_BUILD_INVALID_PACKAGE_JSON", `package.json: "${field}" is not an object`);
    }
    const rewritten: Record<string, string> = {};
    for (const [name, spec] of Object.entries(deps as Record<string, unknown>)) {
      if (typeof spec !== "string") {
        throw new BuildError(
          "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
          `package.json: ${field}.${name} is not a string`,
        );
      }
      if (name === "ociapp") continue;
      rewritten[name] = stageSpec(field, name, spec, options);
    }
    staged[field] = rewritten;
  }
  // The image runs `ociapp serve` from the app's node_modules, so the SDK is always a production
  // dependency, even when the app lists it under devDependencies.
  staged.dependencies = { ...(staged.dependencies ?? {}), ociapp: SDK_SPEC };
  if (staged.optionalDependencies && "ociapp" in (staged.optionalDependencies as object)) {
    delete (staged.optionalDependencies as Record<string, string>).ociapp;
  }
  return staged;
}

function stageSpec(field: string, name: string, spec: string, options: StagePackageOptions): string {
  if (LOCAL_SPEC.test(spec)) {
    throw new BuildError(
      "OCIAPP_BUILD_UNSUPPORTED_DEPENDENCY",
      `${field}.${name} is ${quote(spec)}, a local package that cannot be installed inside the image (only ociapp may be local): publish it or depend on a version`,
    );
  }
  if (options.hasLockfile || !REGISTRY_SPEC.test(spec)) return spec;
  const installed = options.installedVersion(name);
  if (installed === undefined) {
    if (spec.startsWith("catalog:")) {
      throw new BuildError(
        "OCIAPP_BUILD_UNSUPPORTED_DEPENDENCY",
        `${field}.${name} is ${quote(spec)} and is not installed: install the project's dependencies first`,
      );
    }
    return spec;
  }
  return installed;
}

/**
 * The app's npm lockfile with the SDK's entries removed, so that `npm install` in the image keeps
 * every version the lock pins and resolves only the SDK, from the packed tarball. (The lock's SDK
 * entry points at wherever the developer installed it from, which does not exist in the image.)
 */
export function stageLockfile(lock: unknown): unknown {
  if (typeof lock !== "object" || lock === null || Array.isArray(lock)) return lock;
  const staged = structuredClone(lock) as Record<string, unknown>;
  const packages = staged.packages as Record<string, Record<string, unknown>> | undefined;
  if (packages && typeof packages === "object") {
    const root = packages[""];
    if (root) {
      root.dependencies = { ...((root.dependencies as object | undefined) ?? {}), ociapp: SDK_SPEC };
      delete root.devDependencies;
      if (root.optionalDependencies) delete (root.optionalDependencies as Record<string, unknown>).ociapp;
    }
    const entry = packages["node_modules/ociapp"];
    delete packages["node_modules/ociapp"];
    // A linked SDK ("file:../ociapp" directory) has its own entries under the link target.
    const target = entry?.link === true && typeof entry.resolved === "string" ? entry.resolved : undefined;
    if (target) {
      for (const key of Object.keys(packages)) {
        if (key === target || key.startsWith(`${target}/`)) delete packages[key];
      }
    }
  }
  const legacy = staged.dependencies as Record<string, unknown> | undefined;
  if (legacy && typeof legacy === "object") delete legacy.ociapp;
  return staged;
}
