import { chmod, copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, normalize } from "node:path";
import { type ManagedConfig, splitEntrypoint } from "./config.js";
import { BuildError } from "./errors.js";
import { findInstallScripts } from "./native.js";
import { NODEDIR_SCRIPT } from "./nodedir-script.js";
import type { Project } from "./project.js";
import { resolveInstalledPackage } from "./resolve-package.js";
import { listPackFiles } from "./sdk.js";
import { SDK_TARBALL, stageLockfile, stagePackageJson } from "./staged-package.js";
import { loadTemplate, renderContainerfile } from "./template.js";

const LOCKFILES = ["npm-shrinkwrap.json", "package-lock.json"];
const ARTIFACT_FILE = /\.ociapp(\.tmp-.*)?$/;

export const SDK_TARBALL_NAME = basename(SDK_TARBALL);

/** Makes (and returns) the staging folder the packed SDK goes to; see SDK_TARBALL. */
export async function sdkTarballDir(stagingDir: string): Promise<string> {
  const dir = join(stagingDir, "deps", dirname(SDK_TARBALL));
  await mkdir(dir, { recursive: true });
  return dir;
}

/** The staged managed build: its rendered Containerfile, and the dependencies it compiles. */
export interface StagedBuild {
  containerfile: string;
  /** the context holds the bundled entry, which the image runs */
  bundled: boolean;
  /** production dependencies with install scripts ("name@version"); non-empty: the two-stage image */
  installScripts: string[];
  /** an empty folder, the "ociapp-node-headers" context when the host lends no headers */
  emptyDir: string;
}

/** Staging entries that are not part of the build context proper (see .dockerignore below). */
export const NOT_IN_CONTEXT = ["Containerfile", ".dockerignore", "empty"];

/**
 * Assembles the managed build's context in `stagingDir` (see Containerfile.template for its layout),
 * next to the SDK tarball already packed there: only what the image needs crosses into the build,
 * never the project's node_modules or sources. `check` renders the `ociapp check` step; `bundle`,
 * given the dependencies with install scripts, stages the bundled entry (bundle.ts) and resolves
 * whether it did (no bundle when left out).
 */
export async function stageManagedBuild(
  project: Project,
  config: ManagedConfig,
  stagingDir: string,
  options: {
    baseImage: string;
    check: boolean;
    signal?: AbortSignal | undefined;
    bundle?: (installScripts: readonly string[]) => Promise<boolean>;
  },
): Promise<StagedBuild> {
  const depsDir = join(stagingDir, "deps");
  const appDir = join(stagingDir, "app");
  const emptyDir = join(stagingDir, "empty");
  await mkdir(appDir, { recursive: true });
  await mkdir(depsDir, { recursive: true });
  await mkdir(emptyDir, { recursive: true });

  // Artifacts built into the project (an output folder under "files") never go into the next image.
  const files = (await listPackFiles(project.root, options.signal)).filter(
    (file) => !ARTIFACT_FILE.test(basename(file.path)),
  );
  const entryModule = normalize(splitEntrypoint(config.entrypoint).module);
  if (!files.some((file) => normalize(file.path) === entryModule)) {
    throw new BuildError(
      "OCIAPP_BUILD_ENTRYPOINT_MISSING",
      `the entrypoint module ${entryModule} is not among the app's files (is it built? is it included by "files" in package.json?)`,
    );
  }
  for (const file of files) {
    if (file.path === "package.json") continue;
    const target = join(appDir, file.path);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(join(project.root, file.path), target);
    // Owned by root in the image and not writable by the app's user.
    await chmod(target, file.mode & 0o111 ? 0o755 : 0o644);
  }

  let lockfile: { name: string; content: unknown } | undefined;
  for (const name of LOCKFILES) {
    const text = await readFile(join(project.root, name), "utf8").catch(() => undefined);
    if (text === undefined) continue;
    try {
      lockfile = { name, content: JSON.parse(text) as unknown };
    } catch (error) {
      throw new BuildError(
        "OCIAPP_BUILD_INVALID_PACKAGE_JSON",
        `${join(project.root, name)} is not valid JSON`,
        {
          cause: error,
        },
      );
    }
    break;
  }

  const installed = await installedVersions(project);
  const stagedPackage = stagePackageJson(project.packageJson, {
    hasLockfile: lockfile !== undefined,
    installedVersion: (name) => installed.get(name),
  });
  await writeFile(join(depsDir, "package.json"), `${JSON.stringify(stagedPackage, null, 2)}\n`);
  if (lockfile) {
    await writeFile(
      join(depsDir, lockfile.name),
      `${JSON.stringify(stageLockfile(lockfile.content), null, 2)}\n`,
    );
  }

  const installScripts = await findInstallScripts(project.root, project.packageJson, lockfile?.content);
  const native = installScripts.length > 0;
  if (native) {
    await mkdir(join(stagingDir, "builder"), { recursive: true });
    await writeFile(join(stagingDir, "builder", "nodedir.cjs"), NODEDIR_SCRIPT);
  }

  const bundled = (await options.bundle?.(installScripts)) === true;
  const containerfile = join(stagingDir, "Containerfile");
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: options.baseImage,
    config,
    native,
    check: options.check,
    bundle: bundled,
  });
  await writeFile(containerfile, rendered);
  await writeFile(join(stagingDir, ".dockerignore"), `${NOT_IN_CONTEXT.join("\n")}\n`);
  return { containerfile, bundled, installScripts, emptyDir };
}

/** Versions installed for the app's production dependencies, as Node would resolve them from it. */
async function installedVersions(project: Project): Promise<Map<string, string>> {
  const versions = new Map<string, string>();
  const names = new Set<string>();
  for (const field of ["dependencies", "optionalDependencies"]) {
    const deps = project.packageJson[field];
    if (deps && typeof deps === "object") for (const name of Object.keys(deps)) names.add(name);
  }
  for (const name of names) {
    const found = await resolveInstalledPackage(project.root, name);
    if (typeof found?.packageJson.version === "string") versions.set(name, found.packageJson.version);
  }
  return versions;
}

export async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
