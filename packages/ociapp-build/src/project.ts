import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { quote } from "ociapp/artifact";
import { ConfigIssue, type OciappConfig, parseOciappConfig } from "./config.js";
import { BuildError } from "./errors.js";
import { artifactFileName } from "./naming.js";
import {
  dependencyNameProblem,
  MAX_ARTIFACT_FILE_NAME,
  npmNameProblem,
  semverProblem,
} from "./package-name.js";

export interface PackageJson {
  name: string;
  version: string;
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  [key: string]: unknown;
}

export interface Project {
  root: string;
  packageJsonPath: string;
  packageJson: PackageJson;
  config: OciappConfig;
}

/** Reads and validates <root>/package.json and its "ociapp" configuration. */
export async function readProject(projectRoot: string): Promise<Project> {
  const root = resolve(projectRoot);
  const packageJsonPath = join(root, "package.json");
  let text: string;
  try {
    text = await readFile(packageJsonPath, "utf8");
  } catch (error) {
    const exists = await stat(root).then(
      (s) => s.isDirectory(),
      () => false,
    );
    const what = exists
      ? `no package.json in ${root}`
      : `project root ${root} does not exist or is not a directory`;
    throw new BuildError("OCIAPP_BUILD_NO_PACKAGE_JSON", what, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new BuildError("OCIAPP_BUILD_INVALID_PACKAGE_JSON", `${packageJsonPath} is not valid JSON`, {
      cause: error,
    });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new BuildError("OCIAPP_BUILD_INVALID_PACKAGE_JSON", `${packageJsonPath} is not a JSON object`);
  }
  const pkg = raw as Record<string, unknown>;
  for (const key of ["name", "version"] as const) {
    if (typeof pkg[key] !== "string" || (pkg[key] as string).length === 0) {
      throw new BuildError(
        "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
        `${packageJsonPath} has no "${key}": the artifact is named <name>-<version>.ociapp`,
      );
    }
  }
  checkIdentity(packageJsonPath, pkg.name as string, pkg.version as string);
  checkDependencyNames(packageJsonPath, pkg);
  if (pkg.ociapp === undefined) {
    throw new BuildError(
      "OCIAPP_BUILD_NO_CONFIG",
      `${packageJsonPath} has no "ociapp" configuration (add for example "ociapp": {"entrypoint": "dist/main.js#app"})`,
    );
  }
  let config: OciappConfig;
  try {
    config = parseOciappConfig(pkg.ociapp);
  } catch (error) {
    if (!(error instanceof ConfigIssue)) throw error;
    throw new BuildError(
      "OCIAPP_BUILD_INVALID_CONFIG",
      `invalid config in ${packageJsonPath}: ${error.message}`,
      {
        cause: error,
      },
    );
  }
  return { root, packageJsonPath, packageJson: pkg as PackageJson, config };
}

/**
 * The name and version become the artifact's file name, a buildx CSV field, an image reference and
 * annotations: both must follow npm's rules (see package-name.ts), and together fit a file name.
 * Throws a one-line BuildError naming the field and its value (quoted, control characters escaped).
 */
function checkIdentity(packageJsonPath: string, name: string, version: string): void {
  const invalid = (field: string, value: string, what: string, problem: string) =>
    new BuildError(
      "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
      `${packageJsonPath}: "${field}" ${quote(value)} is not ${what}: ${problem}`,
    );
  const nameProblem = npmNameProblem(name);
  if (nameProblem) throw invalid("name", name, "a valid npm package name", nameProblem);
  const versionProblem = semverProblem(version);
  if (versionProblem) throw invalid("version", version, "a valid version", versionProblem);
  const fileName = artifactFileName(name, version);
  if (fileName.length > MAX_ARTIFACT_FILE_NAME) {
    throw new BuildError(
      "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
      `${packageJsonPath}: "name" and "version" make the artifact's file name ${fileName.length} characters long, over the ${MAX_ARTIFACT_FILE_NAME} a file name leaves room for: shorten them`,
    );
  }
}

/** Production dependencies are looked up as node_modules/<name>: a name must not be a path. */
function checkDependencyNames(packageJsonPath: string, pkg: Record<string, unknown>): void {
  for (const field of ["dependencies", "optionalDependencies"]) {
    const deps = pkg[field];
    // Not an object: stagePackageJson reports it, with the other shape errors.
    if (typeof deps !== "object" || deps === null || Array.isArray(deps)) continue;
    for (const name of Object.keys(deps)) {
      const problem = dependencyNameProblem(name);
      if (problem) {
        throw new BuildError(
          "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
          `${packageJsonPath}: ${field} ${quote(name)} is not a valid npm package name: ${problem}`,
        );
      }
    }
  }
}
