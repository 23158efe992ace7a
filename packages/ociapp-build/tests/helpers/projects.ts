import { cp, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { FIXTURES } from "./paths.js";
import { packSdkInto } from "./sdk.js";

export interface TempProject {
  dir: string;
  cleanup(): Promise<void>;
}

/**
 * Copies a fixture project to a temporary folder outside the workspace and vendors the SDK there
 * (vendor/ociapp.tgz: the SDK is not published). With `install`, runs a plain `npm install`, which
 * writes the project's package-lock.json as any npm user's project has.
 */
export async function tempProject(
  fixture: string,
  options: { install?: boolean } = {},
): Promise<TempProject> {
  const dir = await mkdtemp(join(tmpdir(), `ociapp-build-${fixture.replace(/\W/g, "-")}-`));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    await cp(join(FIXTURES, fixture), dir, { recursive: true });
    await mkdir(join(dir, "vendor"), { recursive: true });
    await packSdkInto(join(dir, "vendor"), "ociapp.tgz");
    if (options.install) {
      await execa("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir });
    }
    return { dir, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
