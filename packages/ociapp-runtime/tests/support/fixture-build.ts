import { appendFile, cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "ociapp-build";

const FIXTURE = fileURLToPath(new URL("../fixtures/behaviours-app", import.meta.url));
const SDK = fileURLToPath(new URL("../../../ociapp", import.meta.url));

export interface FixtureProject {
  /** A copy of the behaviours app, its node_modules/ociapp linked to this workspace's SDK. */
  root: string;
  outputDir: string;
  /** Builds the copy into outputDir (the same path each time) and returns the artifact. */
  build(options?: { baseImage?: string }): Promise<{ path: string; digest: string }>;
  /** Changes the app's code, so the next build yields a different artifact. */
  change(): Promise<void>;
  /** Adds hostile.flag: a build of this copy breaks the protocol when OCIAPP_FIXTURE_HOSTILE is set. */
  markHostile(): Promise<void>;
  /** Declares the app's runtime defaults (package.json "ociapp": { "runtime": ... }) for the next build. */
  setRuntimeDefaults(defaults: Record<string, number>): Promise<void>;
  remove(): Promise<void>;
}

/** Copies the fixture app out of the repository, so a test may change it and rebuild. */
export async function fixtureProject(): Promise<FixtureProject> {
  const work = await mkdtemp(join(tmpdir(), "ociapp-runtime-fixture-"));
  const root = join(work, "behaviours-app");
  const outputDir = join(work, "dist");
  try {
    // The image runs the SDK's compiled output; CI builds it before the tests (`pnpm build`).
    await stat(join(SDK, "dist", "cli.js"));
    await cp(FIXTURE, root, { recursive: true });
    await mkdir(join(root, "node_modules"), { recursive: true });
    await symlink(SDK, join(root, "node_modules", "ociapp"), "dir");
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  }
  return {
    root,
    outputDir,
    async build(options = {}) {
      const result = await build({
        projectRoot: root,
        outputDir,
        network: "host",
        progress: "quiet",
        ...options,
      });
      return { path: result.path, digest: result.digest };
    },
    async change() {
      await appendFile(join(root, "main.js"), `\n// rebuilt ${Date.now()}\n`);
    },
    async setRuntimeDefaults(defaults) {
      const file = join(root, "package.json");
      const manifest = JSON.parse(await readFile(file, "utf8")) as { ociapp: Record<string, unknown> };
      manifest.ociapp.runtime = defaults;
      await writeFile(file, `${JSON.stringify(manifest, null, 2)}\n`);
    },
    async markHostile() {
      await writeFile(join(root, "hostile.flag"), "hostile build\n");
    },
    async remove() {
      await rm(work, { recursive: true, force: true });
    },
  };
}
