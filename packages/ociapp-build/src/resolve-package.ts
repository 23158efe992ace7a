import { readFile, realpath } from "node:fs/promises";
import { dirname, join } from "node:path";

/**
 * Finds the directory Node's resolution would load `name` from when required by code in `fromDir`:
 * node_modules/<name> in fromDir or the nearest ancestor that has one. Returns the real path
 * (pnpm and workspaces link packages) and the package.json found there.
 */
export async function resolveInstalledPackage(
  fromDir: string,
  name: string,
): Promise<{ dir: string; packageJson: Record<string, unknown> } | undefined> {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    try {
      const real = await realpath(candidate);
      const packageJson = JSON.parse(await readFile(join(real, "package.json"), "utf8")) as unknown;
      if (typeof packageJson === "object" && packageJson !== null && !Array.isArray(packageJson)) {
        return { dir: real, packageJson: packageJson as Record<string, unknown> };
      }
    } catch {
      // not installed here: look further up, as Node does
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
