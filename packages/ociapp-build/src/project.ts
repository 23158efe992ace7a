import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ConfigIssue, type OciappConfig, parseOciappConfig } from "./config.js";
import { BuildError } from "./errors.js";

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
  if (!/^[\w.+-]+$/.test(pkg.version as string)) {
    throw new BuildError(
      "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
      `${packageJsonPath}: "version" ${JSON.stringify(pkg.version)} is not a valid version`,
    );
  }
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
